//! The deployment files (deploy/kubernetes/, docker/) against what respgate serves: the
//! probes ask the paths and port the admin listener answers on, the ports match the
//! config's listeners, the config the pods get loads with the environment the pods get,
//! and every secret it reads is one the Secret template has; probe timeouts, the
//! readiness window across a failover, preStop + drain within the grace period; the
//! Prometheus scrape example against the Service and Secret. Plus the compose file:
//! `docker-compose config` must accept it (Debian's docker-compose runs without an
//! engine; missing, this test fails, never skips), and its respgate config and
//! Prometheus target agree.
//!
//! YAML: `serde_norway`, the maintained fork of `serde_yaml` (archived in 2024) with the
//! same API; `serde_yml` carries an unsoundness/unmaintained advisory, and the pure-Rust
//! `serde-saphyr` needs a newer Rust than this crate's rust-version (1.85).

use serde::Deserialize;
use serde_norway::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

const K8S: &str = "deploy/kubernetes";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every document of every manifest kustomization.yaml lists, plus the Secret template.
fn manifests() -> Vec<Value> {
    let kustomization: Value = serde_norway::from_str(
        &std::fs::read_to_string(repo(&format!("{K8S}/kustomization.yaml"))).unwrap(),
    )
    .unwrap();
    let mut files: Vec<String> = kustomization["resources"]
        .as_sequence()
        .expect("kustomization.yaml lists resources")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    files.push("secret.example.yaml".into());
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(repo(&format!("{K8S}/{f}")))
            .unwrap_or_else(|e| panic!("{K8S}/{f}: {e}"));
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{f}: {e}"));
            if !v.is_null() {
                docs.push(v);
            }
        }
    }
    docs
}

fn one<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {K8S}"))
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// The Deployment's container `respgate`, its pod spec, and the ConfigMap's TOML.
struct Pod<'a> {
    spec: &'a Value,
    container: &'a Value,
    toml: String,
    config: respgate::config::Config,
    env: BTreeMap<String, String>,
}

/// The env the Deployment gives the container, values resolved from the Secret
/// template (placeholders) and literal values; panics on a secretKeyRef to a Secret or
/// key the template lacks.
fn container_env(docs: &[Value], container: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for e in container["env"].as_sequence().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = if let Some(v) = e["value"].as_str() {
            v.to_string()
        } else {
            let r = &e["valueFrom"]["secretKeyRef"];
            let secret = one(docs, "Secret", r["name"].as_str().unwrap());
            let key = r["key"].as_str().unwrap();
            secret["stringData"][key]
                .as_str()
                .or_else(|| secret["data"][key].as_str())
                .unwrap_or_else(|| {
                    panic!(
                        "{name}: Secret {} has no key {key}",
                        r["name"].as_str().unwrap()
                    )
                })
                .to_string()
        };
        env.insert(name, value);
    }
    env
}

fn pod(docs: &[Value]) -> Pod<'_> {
    let deployment = one(docs, "Deployment", "respgate");
    let spec = &deployment["spec"]["template"]["spec"];
    let container = spec["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "respgate")
        .expect("a container named respgate");
    let config_volume = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| !v["configMap"].is_null())
        .expect("the config comes from a ConfigMap volume");
    let configmap = one(
        docs,
        "ConfigMap",
        config_volume["configMap"]["name"].as_str().unwrap(),
    );
    let env = container_env(docs, container);
    // The file respgate reads (RESPGATE_CONFIG, or --config in args) is the ConfigMap's
    // key under the volume's mount path.
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
        .unwrap_or_default();
    let config_path = args
        .iter()
        .position(|a| *a == "--config" || *a == "-c")
        .map(|i| args[i + 1].to_string())
        .or_else(|| env.get("RESPGATE_CONFIG").cloned())
        .expect("the Deployment tells respgate where its config is");
    let mount = mount_of(container, config_volume["name"].as_str().unwrap());
    let key = Path::new(&config_path)
        .strip_prefix(&mount)
        .unwrap_or_else(|_| panic!("{config_path} is not under the config mount {mount}"))
        .to_str()
        .unwrap()
        .to_string();
    let toml = configmap["data"][key.as_str()]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap has no key {key} (the config path {config_path})"))
        .to_string();
    // Loaded the way the container loads it: the real binary, the Deployment's env
    // (and nothing else of ours that the config might read), TLS files replaced by
    // test certificates (the Secret's are placeholders).
    let config = load_with_env(&toml, &env);
    Pod {
        spec,
        container,
        toml,
        config,
        env,
    }
}

fn mount_of(container: &Value, volume: &str) -> String {
    container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume)
        .unwrap_or_else(|| panic!("volume {volume} is not mounted"))["mountPath"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `respgate check-config` on `toml` with exactly `env` (TLS paths pointed at test
/// certificates), then the same text parsed in-process for the test to inspect.
fn load_with_env(toml: &str, env: &BTreeMap<String, String>) -> respgate::config::Config {
    let pki = support::pki::Pki::new("deploy");
    let server = pki.server("server");
    let mut table: toml::Table = toml::from_str(toml).unwrap();
    let mut text = toml.to_string();
    if let Some(tls) = table.get("tls") {
        text = text
            .replace(tls["cert"].as_str().unwrap(), server.cert.to_str().unwrap())
            .replace(tls["key"].as_str().unwrap(), server.key.to_str().unwrap());
    }
    let file = pki.dir.path().join("respgate.toml");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_respgate"))
        .arg("check-config")
        .arg(&file)
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the config does not load with the env it is given: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // In-process, for the test to read: this process has not the variables the config
    // names (they were checked just above), so those two keys are set back afterwards.
    let mut take = |section: &str, key: &str| {
        table
            .get_mut(section)
            .and_then(|s| s.as_table_mut())
            .and_then(|s| s.remove(key))
            .map(|v| v.as_str().unwrap().to_string())
    };
    let password_env = take("cluster", "password_env");
    let token_env = take("admin", "token_env");
    let mut parsed = respgate::config::Config::from_toml(
        &toml::to_string(&table).unwrap(),
        Path::new("respgate.toml"),
    )
    .unwrap();
    parsed.cluster.password_env = password_env;
    parsed.admin.token_env = token_env;
    parsed
}

fn probe<'a>(container: &'a Value, which: &str) -> (&'a str, u64) {
    let get = &container[which]["httpGet"];
    let port = match &get["port"] {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(name) => container_port(container, name),
        other => panic!("{which}: port {other:?}"),
    };
    (get["path"].as_str().expect("an httpGet probe"), port)
}

fn container_port(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
        .as_u64()
        .unwrap()
}

#[test]
fn probes_ask_what_the_admin_listener_answers() {
    let docs = manifests();
    let pod = pod(&docs);
    let admin_port = port_of(
        pod.config
            .admin
            .listen
            .as_deref()
            .expect("[admin] listen is set"),
    );
    assert_eq!(
        probe(pod.container, "readinessProbe"),
        ("/readyz", admin_port)
    );
    assert_eq!(
        probe(pod.container, "livenessProbe"),
        ("/healthz", admin_port)
    );
    // /metrics and /topology are behind a token from a Secret (never a literal in the
    // ConfigMap); the probes need none (`probe_paths_answer_the_kubelet`).
    assert!(
        pod.config.admin.token.is_none() && pod.config.admin.token_env.is_some(),
        "the admin token comes from the environment (a Secret)"
    );
    assert!(pod.toml.contains("[admin]"));
}

#[test]
fn ports_and_services_match_the_listeners() {
    let docs = manifests();
    let pod = pod(&docs);
    let c = &pod.config;
    let mut listeners = vec![port_of(&c.server.listen)];
    listeners.extend(c.tls.as_ref().map(|t| port_of(&t.listen)));
    listeners.push(port_of(c.admin.listen.as_deref().unwrap()));
    let mut declared: Vec<u64> = pod.container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    declared.sort();
    let mut want = listeners.clone();
    want.sort();
    assert_eq!(declared, want, "container ports vs the config's listeners");
    // Every Service port targets one of them; together they expose all.
    let mut targeted = Vec::new();
    for svc in docs.iter().filter(|d| d["kind"] == "Service") {
        assert_eq!(
            svc["spec"]["selector"],
            one(&docs, "Deployment", "respgate")["spec"]["template"]["metadata"]["labels"],
            "Service {} selects the respgate pods",
            svc["metadata"]["name"].as_str().unwrap()
        );
        for p in svc["spec"]["ports"].as_sequence().unwrap() {
            let target = match &p["targetPort"] {
                Value::Number(n) => n.as_u64().unwrap(),
                Value::String(name) => container_port(pod.container, name),
                _ => p["port"].as_u64().unwrap(),
            };
            assert!(
                want.contains(&target),
                "Service port {target} is no listener"
            );
            targeted.push(target);
        }
    }
    targeted.sort();
    assert_eq!(targeted, want, "every listener has a Service port");
}

#[test]
fn config_secrets_and_mounts_agree() {
    let docs = manifests();
    let pod = pod(&docs);
    let c = &pod.config;
    // Every variable the config reads is set by the Deployment.
    for var in [c.cluster.password_env.as_ref(), c.admin.token_env.as_ref()]
        .into_iter()
        .flatten()
    {
        assert!(
            pod.env.contains_key(var),
            "the config reads {var}; the Deployment does not set it"
        );
    }
    // The Deployment never runs as root.
    let sc = &pod.spec["securityContext"];
    assert_eq!(sc["runAsNonRoot"], Value::Bool(true));
    assert!(sc["runAsUser"].as_u64().unwrap() > 0);
    // The TLS files are keys of the Secret mounted where the config looks for them.
    let toml: toml::Value = toml::from_str(&pod.toml).unwrap();
    if let Some(tls) = toml.get("tls") {
        let volumes = pod.spec["volumes"].as_sequence().unwrap();
        for field in ["cert", "key"] {
            let path = Path::new(tls[field].as_str().unwrap());
            let (dir, file) = (path.parent().unwrap(), path.file_name().unwrap());
            let volume = volumes
                .iter()
                .find(|v| {
                    mount_of(pod.container, v["name"].as_str().unwrap()) == dir.to_str().unwrap()
                })
                .unwrap_or_else(|| panic!("tls.{field}: nothing mounted at {}", dir.display()));
            let secret = one(
                &docs,
                "Secret",
                volume["secret"]["secretName"].as_str().unwrap(),
            );
            assert!(
                !secret["stringData"][file.to_str().unwrap()].is_null(),
                "tls.{field}: the Secret has no key {file:?}"
            );
        }
    }
}

/// The pods' admin section, live, with its token: the kubelet's requests (no token) get
/// answers, a scrape without the token does not.
#[tokio::test]
async fn probe_paths_answer_the_kubelet() {
    let docs = manifests();
    let mut config = pod(&docs).config;
    config.server.listen = "127.0.0.1:0".into();
    config.tls = None;
    config.admin.listen = Some("127.0.0.1:0".into());
    config.cluster.seeds = support::shared_cluster_seeds()
        .iter()
        .map(|s| s.to_string())
        .collect();
    config.cluster.password_env = None;
    config.scripts = Default::default();
    // What the Secret would hold: the variable itself is the Deployment's business
    // (checked in `config_secrets_and_mounts_agree`).
    assert!(config.admin.token_env.take().is_some());
    config.admin.token = Some("from-the-secret".into());
    let proxy = support::start_proxy(config).await;
    let admin = proxy.admin_addr().unwrap();
    for path in ["/healthz", "/readyz"] {
        let (status, body) = support::http_get(admin, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    assert_eq!(support::http_get(admin, "/metrics", None).await.0, 401);
    let (status, _) = support::http_get(admin, "/metrics", Some("from-the-secret")).await;
    assert_eq!(status, 200);
    proxy.shutdown().await;
}

fn compose(args: &[&str]) -> std::process::Output {
    Command::new("docker-compose")
        .args(["-f", "docker/compose.yml"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("REDIS_PASSWORD", "test-only")
        .env("GRAFANA_ADMIN_PASSWORD", "test-only")
        .output()
        .unwrap_or_else(|e| {
            panic!("docker-compose: {e} (apt-get install docker-compose; scripts/test.sh does)")
        })
}

#[test]
fn compose_file_is_valid() {
    let out = compose(&["config", "-q"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the password it refuses to start, naming the variable.
    let out = Command::new("docker-compose")
        .args(["-f", "docker/compose.yml", "config", "-q"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("REDIS_PASSWORD")
        .env("GRAFANA_ADMIN_PASSWORD", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("REDIS_PASSWORD"));
}

#[test]
fn compose_respgate_config_loads_and_prometheus_scrapes_its_admin_port() {
    let toml = std::fs::read_to_string(repo("docker/respgate.toml")).unwrap();
    let out = compose(&["config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resolved: Value = serde_norway::from_slice(&out.stdout).unwrap();
    let respgate = &resolved["services"]["respgate"];
    let mut env = BTreeMap::new();
    for (k, v) in respgate["environment"].as_mapping().unwrap() {
        env.insert(
            k.as_str().unwrap().to_string(),
            v.as_str().unwrap().to_string(),
        );
    }
    let config = load_with_env(&toml, &env);
    // The file is mounted where the image reads it.
    assert!(respgate["volumes"].as_sequence().unwrap().iter().any(|v| v
        .as_str()
        .is_some_and(|s| s.ends_with("docker/respgate.toml:/etc/respgate/respgate.toml:ro"))
        || v["target"] == "/etc/respgate/respgate.toml"));
    // Seeds are compose services.
    for seed in &config.cluster.seeds {
        let host = seed.rsplit_once(':').unwrap().0;
        assert!(
            !resolved["services"][host].is_null(),
            "seed {seed} is no compose service"
        );
    }
    let admin_port = port_of(config.admin.listen.as_deref().unwrap());
    let prom: Value =
        serde_norway::from_str(&std::fs::read_to_string(repo("docker/prometheus.yml")).unwrap())
            .unwrap();
    let targets: Vec<&str> = prom["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|s| s["static_configs"].as_sequence().unwrap())
        .flat_map(|s| s["targets"].as_sequence().unwrap())
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(targets, [format!("respgate:{admin_port}")]);
    assert_eq!(prom["rule_files"][0], "/etc/prometheus/alerts.yml");
}

/// Probe timeouts, the shutdown sequence and readiness across a failover.
#[test]
fn probes_and_shutdown_leave_respgate_the_time_it_needs() {
    let docs = manifests();
    let pod = pod(&docs);
    // /readyz PINGs the masters with a 0.9 s timeout (and may wait for a check in
    // flight): the Kubernetes default probe timeout, 1 s, is too short.
    for which in ["readinessProbe", "livenessProbe"] {
        let timeout = pod.container[which]["timeoutSeconds"].as_u64().unwrap_or(1);
        assert!(
            timeout >= 2,
            "{which}: timeoutSeconds {timeout} (the default is 1)"
        );
    }
    // Readiness is cluster-wide (a dead master makes every pod 503 at once): a failover
    // at Redis' default cluster-node-timeout (15 s, plus election and respgate's
    // topology check) must not take every pod out of the Service.
    let ready = &pod.container["readinessProbe"];
    let period = ready["periodSeconds"].as_u64().unwrap_or(10);
    let threshold = ready["failureThreshold"].as_u64().unwrap_or(3);
    assert!(
        period * (threshold - 1) > 15 + 5,
        "readiness leaves the Service after {period} s x {threshold} failures: a default \
         failover (~17 s) would empty it"
    );
    // Shutdown: preStop sleeps (kube-proxy stops sending new connections), SIGTERM, then
    // the drain of [server] shutdown_grace_secs; the kubelet must not kill before.
    let command: Vec<&str> = pod.container["lifecycle"]["preStop"]["exec"]["command"]
        .as_sequence()
        .expect("a preStop exec hook")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let [sleep, secs] = command[..] else {
        panic!("preStop: {command:?}, expected [/bin/sleep, N]")
    };
    assert_eq!(sleep, "/bin/sleep");
    let dockerfile = std::fs::read_to_string(repo("docker/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("FROM debian:bookworm-slim"),
        "preStop runs /bin/sleep: the runtime image must have it (coreutils)"
    );
    let pre_stop: u64 = secs.parse().unwrap();
    assert!(pre_stop >= 3, "preStop sleeps {pre_stop} s");
    let grace = pod.spec["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    let drain = pod.config.server.shutdown_grace_secs;
    assert!(
        grace > pre_stop + drain,
        "terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + shutdown_grace_secs \
         {drain}: the kubelet would kill respgate mid-drain"
    );
    // /metrics needs the token: annotation-driven scraping (no token) cannot work.
    let annotations =
        &one(&docs, "Deployment", "respgate")["spec"]["template"]["metadata"]["annotations"];
    assert!(
        annotations["prometheus.io/scrape"].is_null(),
        "prometheus.io/scrape on pods whose /metrics needs a bearer token"
    );
}

/// deploy/kubernetes/prometheus-scrape.example.yaml (not applied: a Prometheus config
/// fragment) against the manifests: the Service and port it keeps are the admin
/// listener's, the path is /metrics, the token file is the Secret and key the
/// Deployment gives respgate as its admin token. (Debian's promtool is built without
/// Kubernetes discovery, so `promtool check config` cannot read it.)
#[test]
fn prometheus_scrape_example_matches_the_manifests() {
    let docs = manifests();
    let pod = pod(&docs);
    let kustomization =
        std::fs::read_to_string(repo(&format!("{K8S}/kustomization.yaml"))).unwrap();
    assert!(!kustomization.contains("prometheus-scrape"));
    let scrape: Value = serde_norway::from_str(
        &std::fs::read_to_string(repo(&format!("{K8S}/prometheus-scrape.example.yaml"))).unwrap(),
    )
    .unwrap();
    let job = &scrape["scrape_configs"][0];
    assert_eq!(job["metrics_path"], "/metrics");
    // The token: /etc/prometheus/secrets/<Secret>/<key>, the Secret and key of the
    // variable [admin] token_env names.
    let token_env = pod.config.admin.token_env.as_deref().unwrap();
    let env_entry = pod.container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == token_env)
        .unwrap();
    let secret_ref = &env_entry["valueFrom"]["secretKeyRef"];
    let file = job["authorization"]["credentials_file"].as_str().unwrap();
    assert_eq!(
        file,
        format!(
            "/etc/prometheus/secrets/{}/{}",
            secret_ref["name"].as_str().unwrap(),
            secret_ref["key"].as_str().unwrap()
        )
    );
    // The kept targets: `<service>;<port name>` of a Service whose port targets the
    // admin listener.
    let keep = job["relabel_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "keep")
        .expect("a keep rule");
    let (service, port_name) = keep["regex"].as_str().unwrap().split_once(';').unwrap();
    let svc = one(&docs, "Service", service);
    let port = svc["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port_name)
        .unwrap_or_else(|| panic!("Service {service} has no port {port_name}"));
    let admin_port = port_of(pod.config.admin.listen.as_deref().unwrap());
    assert_eq!(port["targetPort"].as_u64(), Some(admin_port));
    // Not-ready pods are scraped too: endpoint(slice)s list them, and the headless
    // admin Service selects every respgate pod.
    assert_eq!(svc["spec"]["clusterIP"], "None");
}
