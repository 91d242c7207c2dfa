//! The deployment files (Dockerfile, docker-compose.yml, deploy/) name only things the project
//! has: every metric a dashboard panel or alert rule plots is one the processor serves, every
//! config key parses with the real `Config`, every flag and `ROLLOUT_BREAKER_*` variable is
//! one the CLI takes, ports agree, images are pinned and built where they are used. The real
//! tools run where installed (`promtool check rules/config`, `kubectl kustomize`, and with Go
//! `deploy/tools`: strict decoding into the Kubernetes API types, compose-go's loader,
//! BuildKit's Dockerfile parser and linter);
//! otherwise these parse-based checks are all there is, and they always run. Also: the README's
//! configuration reference names every field of the config structs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use rollout_breaker::config::Config;
use rollout_breaker::engine::{Action, Policy};
use rollout_breaker::observe::PROCESSOR_METRICS;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Yaml {
    let mut value: Yaml =
        serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    // `<<: *anchor` merge keys, as docker compose applies them.
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    value
}

fn yaml_docs(text: &str) -> Vec<Yaml> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Yaml::deserialize(d).expect("YAML document"))
        .filter(|d| !d.is_null())
        .collect()
}

fn s(v: &Yaml) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v:?}"))
}

fn strings(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .map(|seq| seq.iter().map(|x| s(x).to_owned()).collect())
        .unwrap_or_default()
}

/// `rollout-breaker <subcommand> --help`, from the binary this test builds.
fn help(subcommand: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rollout-breaker"))
        .args([subcommand, "--help"])
        .output()
        .expect("run rollout-breaker --help");
    assert!(out.status.success(), "rollout-breaker {subcommand} --help");
    String::from_utf8(out.stdout).unwrap()
}

/// Every `--flag` in `args` is one `rollout-breaker <args[0]>` takes, and every
/// `ROLLOUT_BREAKER_*` variable in `env` is one it reads.
fn assert_cli_accepts(what: &str, args: &[String], env: &[String]) {
    let sub = &args[0];
    let help = help(sub);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        let flag = flag.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "{what}: `rollout-breaker {sub}` has no flag {flag}"
        );
    }
    for var in env.iter().filter(|v| v.starts_with("ROLLOUT_BREAKER_")) {
        assert!(
            help.contains(&format!("[env: {var}=")),
            "{what}: `rollout-breaker {sub}` reads no variable {var}"
        );
    }
}

/// Identifiers `rollout_breaker_*` in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("rollout_breaker_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// `action="X"` label values in a PromQL expression.
fn action_values(expr: &str) -> Vec<String> {
    expr.match_indices("action=\"")
        .map(|(i, m)| {
            let rest = &expr[i + m.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

/// Every PromQL expression of the dashboard (panels, variables, annotations).
fn dashboard_exprs(dashboard: &Json) -> Vec<String> {
    fn walk(v: &Json, out: &mut Vec<String>) {
        match v {
            Json::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "definition", Json::String(e)) => out.push(e.clone()),
                        ("query", Json::String(e)) if e.contains('(') => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Json::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

fn alert_rules() -> Vec<(String, String)> {
    let rules = yaml("deploy/prometheus/alerts.yml");
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            out.push((s(&rule["alert"]).to_owned(), s(&rule["expr"]).to_owned()));
        }
    }
    out
}

fn check_expr(what: &str, expr: &str) {
    let served: BTreeSet<&str> = PROCESSOR_METRICS.iter().copied().collect();
    for name in metric_names(expr) {
        assert!(
            served.contains(name.as_str()),
            "{what} uses {name}, which the processor does not serve (observe::PROCESSOR_METRICS): {expr}"
        );
    }
    let actions = [
        Action::Start,
        Action::Advance,
        Action::Maintain,
        Action::Rollback,
        Action::Pause,
        Action::Resume,
        Action::Retire,
    ]
    .map(Action::name);
    for value in action_values(expr) {
        assert!(
            actions.contains(&value.as_str()),
            "{what}: no action {value}: {expr}"
        );
    }
}

#[test]
fn dashboard_and_alerts_plot_only_metrics_the_processor_serves() {
    let dashboard: Json =
        serde_json::from_str(&read("deploy/grafana/rollout-breaker.json")).unwrap();
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 15, "dashboard has its queries: {exprs:?}");
    let mut plotted = BTreeSet::new();
    for expr in &exprs {
        check_expr("dashboard", expr);
        plotted.extend(metric_names(expr));
    }
    // Every panel has a title and queries on the dashboard's data source variable.
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(panel["title"].as_str().is_some_and(|t| !t.is_empty()));
        if panel["type"] != "row" {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{}",
                panel["title"]
            );
            assert!(!panel["targets"].as_array().unwrap().is_empty());
        }
    }
    // The dashboard shows every metric the processor serves.
    for name in PROCESSOR_METRICS {
        assert!(
            plotted.contains(*name),
            "dashboard plots no panel of {name}"
        );
    }
    let rules = alert_rules();
    let names: BTreeSet<&str> = rules.iter().map(|(a, _)| a.as_str()).collect();
    for alert in [
        "RolloutRolledBack",
        "RolloutBreakerConsumerLagGrowing",
        "RolloutBreakerDeadLetterRate",
        "RolloutBreakerNotReady",
        "RolloutBreakerRestarting",
    ] {
        assert!(names.contains(alert), "alert {alert} missing");
    }
    for (alert, expr) in &rules {
        check_expr(&format!("alert {alert}"), expr);
    }
}

/// The processor config of the containers, and the Secret's `[kafka.options]` appended to it as
/// the StatefulSet's init container does.
#[test]
fn every_shipped_config_and_policy_parses_with_the_real_structs() {
    let base = read("deploy/config/processor.toml");
    let config = Config::from_toml(&base, "deploy/config/processor.toml").unwrap();
    assert_eq!(config.http.listen.unwrap().port(), 9464);
    let secret = yaml("deploy/kubernetes/kafka-credentials.example.yaml");
    let options = s(&secret["stringData"]["kafka-options.toml"]);
    let merged = Config::from_toml(&format!("{base}\n{options}"), "merged").unwrap();
    assert!(merged.kafka.options.contains_key("security.protocol"));
    for policy in ["statistical", "threshold", "segments-regions"] {
        let path = format!("deploy/config/policies/{policy}.toml");
        Policy::from_toml(&read(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    // The same checks through the binary, as the init container runs them.
    let out = Command::new(env!("CARGO_BIN_EXE_rollout-breaker"))
        .args(["check-config", "deploy/config/processor.toml"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn config() -> Config {
    Config::from_toml(
        &read("deploy/config/processor.toml"),
        "deploy/config/processor.toml",
    )
    .unwrap()
}

#[test]
fn dockerfile_builds_with_the_script_and_runs_the_processor() {
    let dockerfile = read("Dockerfile");
    let script = read("scripts/build-release");
    assert!(
        script.contains("cargo build --locked --profile \"$profile\" --bin rollout-breaker"),
        "scripts/build-release runs the release build"
    );
    assert!(script.contains("CARGO_PROFILE:-release"));
    assert!(
        dockerfile
            .lines()
            .any(|l| l.contains("scripts/build-release")),
        "the Dockerfile's build stage runs scripts/build-release"
    );
    assert!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")) >= 2,
        "multi-stage"
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"rollout-breaker\"]"));
    assert!(dockerfile.contains("CMD [\"run\"]"));
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "non-root: {user}"
    );
    let health = dockerfile
        .split("\nHEALTHCHECK ")
        .nth(1)
        .expect("HEALTHCHECK")
        .split("\n\n")
        .next()
        .unwrap();
    let port = config().http.listen.unwrap().port();
    assert!(
        health.contains(&format!("127.0.0.1:{port}/healthz")),
        "{health}"
    );
    assert!(dockerfile.contains(&format!("EXPOSE {port}")));
    assert!(dockerfile.contains(&format!("ROLLOUT_BREAKER_HTTP_LISTEN=0.0.0.0:{port}")));
    // The default config the image carries, at the path ROLLOUT_BREAKER_CONFIG names.
    assert!(dockerfile
        .contains("COPY deploy/config/processor.toml /etc/rollout-breaker/processor.toml"));
    assert!(dockerfile.contains("ROLLOUT_BREAKER_CONFIG=/etc/rollout-breaker/processor.toml"));
    let env: Vec<String> = dockerfile
        .split_whitespace()
        .filter_map(|w| w.split_once('=').map(|(k, _)| k.to_owned()))
        .filter(|k| k.starts_with("ROLLOUT_BREAKER_"))
        .collect();
    assert!(env.len() >= 3, "{env:?}");
    assert_cli_accepts("Dockerfile", &["run".to_owned()], &env);
    let ignore = read(".dockerignore");
    for entry in ["target", ".cache", ".git"] {
        assert!(
            ignore.lines().any(|l| l == entry),
            ".dockerignore lacks {entry}"
        );
    }
}

fn compose() -> Yaml {
    yaml("docker-compose.yml")
}

/// A service's `command` as a list.
fn command_of(service: &Yaml) -> Vec<String> {
    strings(&service["command"])
}

/// A service's `environment` names.
fn env_of(service: &Yaml) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(map) = service["environment"].as_mapping() {
        for (k, v) in map {
            let v = match v {
                Yaml::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other).unwrap().trim().to_owned(),
            };
            out.insert(s(k).to_owned(), v);
        }
    }
    out
}

fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .map(|i| args[i + 1].clone())
}

#[test]
fn compose_stack_names_only_what_exists() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    let config = config();
    let port = config.http.listen.unwrap().port();

    // Images: the processor's is built from the Dockerfile here; the others are pinned.
    let built: BTreeSet<String> = services
        .values()
        .filter(|svc| svc["build"].as_str() == Some("."))
        .map(|svc| s(&svc["image"]).to_owned())
        .collect();
    assert_eq!(
        built.len(),
        1,
        "one image built from the Dockerfile: {built:?}"
    );
    let known = ["apache/kafka", "prom/prometheus", "grafana/grafana"];
    for (name, svc) in services {
        let image = s(&svc["image"]);
        if built.contains(image) {
            continue;
        }
        let (repo, tag) = image
            .split_once(':')
            .unwrap_or_else(|| panic!("{image}: pin a tag"));
        assert!(
            known.contains(&repo),
            "service {}: unexpected image {image}",
            s(name)
        );
        assert!(tag != "latest" && !tag.is_empty(), "{image}: pin a tag");
    }

    // Bind mounts exist in the repository.
    for (name, svc) in services {
        for volume in strings(&svc["volumes"]) {
            let host = volume.split(':').next().unwrap();
            assert!(
                root().join(host).exists(),
                "service {}: {host} does not exist",
                s(name)
            );
        }
    }

    // Kafka: the official image, KRaft, the shared single-node settings (also used by the
    // testcontainers path and scripts/kafka.sh).
    let kafka = &compose["services"]["kafka"];
    let image = s(&kafka["image"]);
    assert_eq!(
        image,
        format!("apache/kafka:{}", common::TESTCONTAINERS_KAFKA_TAG),
        "testcontainers runs the compose file's broker image"
    );
    let kafka_sh = read("scripts/kafka.sh");
    assert!(
        kafka_sh.contains(&format!(
            "KAFKA_VERSION:-{}",
            common::TESTCONTAINERS_KAFKA_TAG
        )),
        "scripts/kafka.sh runs the same Kafka version"
    );
    assert_eq!(s(&kafka["env_file"]), "deploy/compose/kafka.env");
    let settings: BTreeMap<String, String> = common::kafka_env_file().into_iter().collect();
    for required in [
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ] {
        assert_eq!(
            settings.get(required).map(String::as_str),
            Some("1"),
            "{required}"
        );
    }
    for (name, value) in &settings {
        let property = name
            .trim_start_matches("KAFKA_")
            .to_lowercase()
            .replace('_', ".");
        assert!(
            kafka_sh.contains(&format!("\n{property}={value}\n")),
            "kafka.env {name}={value}: scripts/kafka.sh has no {property}={value}"
        );
    }
    let kafka_env = env_of(kafka);
    assert!(
        kafka_env["KAFKA_PROCESS_ROLES"].contains("controller"),
        "KRaft"
    );
    let (host, kafka_port) = config.kafka.bootstrap_servers.split_once(':').unwrap();
    assert!(
        kafka_env["KAFKA_ADVERTISED_LISTENERS"].contains(&format!("//{host}:{kafka_port}")),
        "the processors' bootstrap {} is advertised",
        config.kafka.bootstrap_servers
    );

    // Topic init creates the config's topics with its partition count.
    let init = &compose["services"]["topic-init"];
    assert_eq!(
        env_of(init)["PARTITIONS"],
        config.topics.partitions.to_string()
    );
    assert_eq!(env_of(init)["BOOTSTRAP"], config.kafka.bootstrap_servers);
    let script = read("deploy/compose/create-topics.sh");
    for topic in [
        &config.topics.events,
        &config.topics.decisions,
        &config.topics.commands,
        &config.topics.dead_letter,
    ] {
        assert!(
            script.contains(&format!("create {topic}")),
            "topic-init creates {topic}"
        );
    }
    assert!(script.contains(&format!(
        "create {} --config cleanup.policy=compact",
        config.topics.decisions
    )));

    // Processors: two or more replicas of one group with distinct instance ids, the config
    // mounted where the image looks for it, the HTTP port.
    let mut instance_ids = BTreeSet::new();
    let mut processors = Vec::new();
    for (name, svc) in services {
        let args = command_of(svc);
        let env: Vec<String> = env_of(svc).into_keys().collect();
        if built.contains(s(&svc["image"])) && !args.is_empty() {
            assert_cli_accepts(&format!("service {}", s(name)), &args, &env);
        }
        if args.first().map(String::as_str) != Some("run") {
            continue;
        }
        processors.push(s(name).to_owned());
        let id = flag_value(&args, "--instance-id").expect("--instance-id");
        assert!(
            instance_ids.insert(id.clone()),
            "instance id {id} used twice"
        );
        assert!(
            flag_value(&args, "--group-id").is_none(),
            "one group: the config's"
        );
        assert!(strings(&svc["volumes"]).contains(
            &"./deploy/config/processor.toml:/etc/rollout-breaker/processor.toml:ro".to_owned()
        ));
        assert!(
            strings(&svc["ports"])
                .iter()
                .any(|p| p.ends_with(&format!(":{port}"))),
            "service {} publishes {port}",
            s(name)
        );
    }
    assert!(
        processors.len() >= 2,
        "two processor replicas: {processors:?}"
    );

    // The fleet: a good and a degrading rollout, on the processors' broker and topics.
    let sim_help = help("simulate");
    let mut scenarios = BTreeMap::new();
    for svc in services.values() {
        let args = command_of(svc);
        if args.first().map(String::as_str) != Some("simulate") {
            continue;
        }
        let scenario = flag_value(&args, "--scenario").unwrap_or_else(|| "good".into());
        let rollout = flag_value(&args, "--rollout").expect("--rollout");
        assert_eq!(
            env_of(svc)["ROLLOUT_BREAKER_BOOTSTRAP_SERVERS"],
            config.kafka.bootstrap_servers
        );
        let events = flag_value(&args, "--events-topic");
        assert!(
            events.as_ref() == Some(&config.topics.events)
                || (events.is_none()
                    && sim_help.contains(&format!("[default: {}]", config.topics.events)))
        );
        assert!(sim_help.contains(&format!("[default: {}]", config.topics.decisions)));
        scenarios.insert(scenario, rollout);
    }
    assert!(
        scenarios.contains_key("good"),
        "a good rollout: {scenarios:?}"
    );
    assert!(
        scenarios.keys().any(|k| k != "good"),
        "a degrading rollout: {scenarios:?}"
    );
    let rollouts: BTreeSet<_> = scenarios.values().collect();
    assert_eq!(rollouts.len(), scenarios.len(), "distinct rollout ids");

    // Prometheus scrapes every processor on its HTTP port and loads the alert rules.
    let prometheus = yaml("deploy/compose/prometheus.yml");
    let targets: BTreeSet<String> = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|c| c["static_configs"].as_sequence().unwrap().iter())
        .flat_map(|sc| strings(&sc["targets"]))
        .collect();
    let expected: BTreeSet<String> = processors.iter().map(|p| format!("{p}:{port}")).collect();
    assert_eq!(targets, expected);
    let rule_files = strings(&prometheus["rule_files"]);
    let prom_volumes = strings(&compose["services"]["prometheus"]["volumes"]);
    for file in &rule_files {
        assert!(
            prom_volumes.contains(&format!("./deploy/prometheus/alerts.yml:{file}:ro")),
            "rule file {file} is the repository's alerts.yml"
        );
    }

    // Grafana: the provisioned data source is the dashboard's default, the dashboard folder is
    // the one the provider reads.
    let datasources = yaml("deploy/compose/grafana/provisioning/datasources/prometheus.yml");
    let uid = s(&datasources["datasources"][0]["uid"]);
    let dashboard: Json =
        serde_json::from_str(&read("deploy/grafana/rollout-breaker.json")).unwrap();
    let ds_var = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "datasource")
        .unwrap();
    assert_eq!(ds_var["current"]["value"], uid);
    let provider = yaml("deploy/compose/grafana/provisioning/dashboards/rollout-breaker.yml");
    let path = s(&provider["providers"][0]["options"]["path"]);
    assert!(strings(&compose["services"]["grafana"]["volumes"])
        .contains(&format!("./deploy/grafana:{path}:ro")));
}

#[test]
fn kubernetes_base_names_only_what_exists() {
    let kustomization = yaml("deploy/kustomization.yaml");
    let mut docs = Vec::new();
    for resource in strings(&kustomization["resources"]) {
        docs.extend(yaml_docs(&read(&format!("deploy/{resource}"))));
    }
    let mut configmaps = BTreeSet::new();
    for generator in kustomization["configMapGenerator"].as_sequence().unwrap() {
        configmaps.insert(s(&generator["name"]).to_owned());
        for file in strings(&generator["files"]) {
            let path = file.split_once('=').map_or(file.as_str(), |(_, p)| p);
            assert!(root().join("deploy").join(path).exists(), "deploy/{path}");
        }
    }
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(k))
            .unwrap_or_else(|| panic!("no {k}"))
    };
    kind("PodDisruptionBudget");
    kind("Service");
    let sts = kind("StatefulSet");
    let config = config();
    let port = config.http.listen.unwrap().port();
    let pod = &sts["spec"]["template"]["spec"];
    let image_name = s(&kustomization["images"][0]["name"]);
    let mut containers: Vec<&Yaml> = pod["containers"].as_sequence().unwrap().iter().collect();
    containers.extend(pod["initContainers"].as_sequence().unwrap());
    for c in &containers {
        assert_eq!(s(&c["image"]), image_name, "kustomize sets the image");
    }
    let processor = containers[0];
    let args = strings(&processor["args"]);
    let env: Vec<String> = processor["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| s(&e["name"]).to_owned())
        .collect();
    assert_cli_accepts("StatefulSet", &args, &env);
    assert_eq!(args[0], "run");
    // The instance id is the pod's stable name.
    assert_eq!(
        flag_value(&args, "--instance-id").as_deref(),
        Some("$(POD_NAME)")
    );
    let pod_name = processor["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "POD_NAME")
        .expect("POD_NAME");
    assert_eq!(
        s(&pod_name["valueFrom"]["fieldRef"]["fieldPath"]),
        "metadata.name"
    );
    for e in processor["env"].as_sequence().unwrap() {
        if e["name"] == "ROLLOUT_BREAKER_HTTP_LISTEN" {
            assert_eq!(s(&e["value"]), format!("0.0.0.0:{port}"));
        }
    }
    assert_eq!(
        processor["ports"][0]["containerPort"].as_u64(),
        Some(u64::from(port))
    );
    assert_eq!(
        s(&processor["livenessProbe"]["httpGet"]["path"]),
        "/healthz"
    );
    assert_eq!(
        s(&processor["readinessProbe"]["httpGet"]["path"]),
        "/readyz"
    );
    assert!(processor["resources"]["requests"]["cpu"].as_str().is_some());
    assert!(processor["resources"]["requests"]["memory"]
        .as_str()
        .is_some());
    let replicas = sts["spec"]["replicas"].as_u64().unwrap();
    assert!(
        replicas >= 2 && replicas <= config.topics.partitions as u64,
        "replicas within the partitions"
    );
    // The config file the processor reads is the one the init container writes and checks.
    let config_path = flag_value(&args, "--config").expect("--config");
    let init = s(&pod["initContainers"][0]["command"][2]);
    assert!(init.contains(&format!("> {config_path}")), "{init}");
    assert!(init.contains(&format!("rollout-breaker check-config {config_path}")));
    // Volumes name the generated ConfigMaps and the optional credentials Secret.
    for volume in pod["volumes"].as_sequence().unwrap() {
        if let Some(name) = volume["configMap"]["name"].as_str() {
            assert!(configmaps.contains(name), "ConfigMap {name} is generated");
        }
        if let Some(secret) = volume["secret"].as_mapping() {
            let name = s(&volume["secret"]["secretName"]);
            let example = yaml("deploy/kubernetes/kafka-credentials.example.yaml");
            assert_eq!(s(&example["metadata"]["name"]), name);
            assert_eq!(secret.get("optional").and_then(Yaml::as_bool), Some(true));
        }
    }

    // The real renderer, where installed.
    match Command::new("kubectl")
        .args(["kustomize", "deploy"])
        .current_dir(root())
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "kubectl kustomize: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let rendered = yaml_docs(&String::from_utf8(out.stdout).unwrap());
            let kinds: BTreeSet<&str> =
                rendered.iter().filter_map(|d| d["kind"].as_str()).collect();
            for k in [
                "StatefulSet",
                "Service",
                "PodDisruptionBudget",
                "ConfigMap",
                "ServiceAccount",
            ] {
                assert!(kinds.contains(k), "kubectl kustomize renders a {k}");
            }
            let pdb = rendered
                .iter()
                .find(|d| d["kind"] == "PodDisruptionBudget")
                .unwrap();
            let sts = rendered
                .iter()
                .find(|d| d["kind"] == "StatefulSet")
                .unwrap();
            assert_eq!(
                pdb["spec"]["selector"]["matchLabels"], sts["spec"]["selector"]["matchLabels"],
                "the PDB selects the processors"
            );
        }
        Err(_) => eprintln!("note: kubectl not installed; `kubectl kustomize deploy` not run"),
    }
}

/// Builds `deploy/tools/<name>` into `dir`; `None` (with a note) where Go is missing or the
/// build fails for want of the module proxy or a recent toolchain: a tooling gap, not a
/// manifest error (the parse-based tests still run).
fn go_tool(name: &str, dir: &std::path::Path) -> Option<PathBuf> {
    if std::env::var_os("SKIP_TOOL_FETCH").is_some_and(|v| v == "1") {
        eprintln!("note: SKIP_TOOL_FETCH=1; deploy/tools/{name} not run");
        return None;
    }
    if Command::new("go").arg("version").output().is_err() {
        eprintln!("note: Go not installed; deploy/tools/{name} not run");
        return None;
    }
    let tool = dir.join(name);
    let build = Command::new("go")
        .args(["build", "-o"])
        .arg(&tool)
        .arg(format!("./{name}"))
        .current_dir(root().join("deploy/tools"))
        .output()
        .unwrap();
    if !build.status.success() {
        eprintln!(
            "note: could not build deploy/tools/{name}, not run: {}",
            String::from_utf8_lossy(&build.stderr)
        );
        return None;
    }
    Some(tool)
}

/// docker-compose.yml loads with compose-go, the loader of `docker compose` (schema, merges,
/// env files), and resolves to the services, images and commands the parse-based test saw.
#[test]
fn compose_file_loads_with_the_compose_loader() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tool) = go_tool("composecheck", dir.path()) else {
        return;
    };
    let out = Command::new(&tool)
        .arg(root().join("docker-compose.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "compose-go rejects docker-compose.yml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loaded: BTreeMap<String, (String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            let name = f.next().unwrap().to_owned();
            let image = f.next().unwrap_or_default().to_owned();
            (name, (image, f.next().unwrap_or_default().to_owned()))
        })
        .collect();
    let compose = compose();
    let services = compose["services"].as_mapping().unwrap();
    assert_eq!(loaded.len(), services.len(), "{loaded:?}");
    for (name, svc) in services {
        let (image, command) = &loaded[s(name)];
        assert_eq!(image, s(&svc["image"]), "service {}", s(name));
        assert_eq!(command, &command_of(svc).join(" "), "service {}", s(name));
    }
}

/// The Dockerfile parses with BuildKit's frontend, passes the lint rules of
/// `docker build --check`, and has a build stage and a runtime stage.
#[test]
fn dockerfile_parses_and_lints_with_buildkit() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tool) = go_tool("dockerfilecheck", dir.path()) else {
        return;
    };
    let out = Command::new(&tool)
        .arg(root().join("Dockerfile"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "BuildKit rejects the Dockerfile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stages: Vec<Vec<String>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').skip(1).map(str::to_owned).collect())
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    assert_eq!(stages[0][0], "build");
    assert!(stages.last().unwrap()[1].ends_with("-slim"), "{stages:?}");
}

/// The manifests decode strictly into the Kubernetes API's Go types (deploy/tools/kubecheck),
/// so a misspelt or misplaced field fails, without a cluster or downloaded schemas.
#[test]
fn kubernetes_manifests_decode_strictly_into_the_api_types() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tool) = go_tool("kubecheck", dir.path()) else {
        return;
    };
    let kustomization = yaml("deploy/kustomization.yaml");
    let mut files: Vec<PathBuf> = strings(&kustomization["resources"])
        .iter()
        .map(|r| root().join("deploy").join(r))
        .collect();
    files.push(root().join("deploy/kubernetes/kafka-credentials.example.yaml"));
    // With kubectl, also what kustomize renders (generated ConfigMaps, labels, selectors).
    if let Ok(out) = Command::new("kubectl")
        .args(["kustomize", "deploy"])
        .current_dir(root())
        .output()
    {
        if out.status.success() {
            let rendered = dir.path().join("rendered.yaml");
            std::fs::write(&rendered, out.stdout).unwrap();
            files.push(rendered);
        }
    }
    let out = Command::new(&tool).args(&files).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}");
    assert!(out.status.success(), "kubecheck: {report}");
}

#[test]
fn promtool_accepts_the_rules_and_the_compose_prometheus_config() {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!(
            "note: promtool not installed (scripts/test fetches it from Debian's prometheus package \
             where it can); `promtool check rules/config` not run"
        );
        return;
    }
    let out = Command::new("promtool")
        .args(["check", "rules", "deploy/prometheus/alerts.yml"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The compose config names the rule file by its path in the container; point it at ours.
    let dir = tempfile::tempdir().unwrap();
    let config = read("deploy/compose/prometheus.yml");
    let rules = root().join("deploy/prometheus/alerts.yml");
    let rule_files = strings(&yaml("deploy/compose/prometheus.yml")["rule_files"]);
    let mut local = config.clone();
    for file in &rule_files {
        local = local.replace(file.as_str(), rules.to_str().unwrap());
    }
    let path = dir.path().join("prometheus.yml");
    std::fs::write(&path, local).unwrap();
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `(section, key)` pairs of a TOML value, tables as sections (`kafka.options`, `policy`).
fn keys(value: &toml::Value, section: &str, out: &mut BTreeSet<(String, String)>) {
    let Some(table) = value.as_table() else {
        return;
    };
    for (k, v) in table {
        let nested = if section.is_empty() {
            k.clone()
        } else {
            format!("{section}.{k}")
        };
        match v {
            toml::Value::Table(_) => {
                out.insert((nested.clone(), String::new()));
                keys(v, &nested, out);
            }
            toml::Value::Array(items)
                if items.iter().all(toml::Value::is_table) && !items.is_empty() =>
            {
                out.insert((nested.clone(), String::new()));
                for item in items {
                    keys(item, &nested, out);
                }
            }
            _ => {
                out.insert((section.to_owned(), k.clone()));
            }
        }
    }
}

/// The README's configuration block: section -> keys, commented-out lines (`# key = ...`,
/// `# [[policy.metrics]]`) counted as documented.
fn readme_config_block() -> (String, BTreeMap<String, BTreeSet<String>>) {
    let readme = read("README.md");
    let start = readme
        .find("## Configuration")
        .expect("README: ## Configuration");
    let block = &readme[start..];
    let block = &block[block.find("```toml\n").expect("a ```toml block") + 8..];
    let block = &block[..block.find("```").unwrap()];
    let mut sections: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current = String::new();
    sections.insert(current.clone(), BTreeSet::new());
    for line in block.lines() {
        let line = line.trim_start();
        let line = line.strip_prefix("# ").unwrap_or(line).trim_start();
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_start_matches('[');
            current = header[..header.find(']').unwrap()].trim().to_owned();
            sections.entry(current.clone()).or_default();
        } else if let Some((key, _)) = line.split_once(" = ") {
            let key = key.trim().trim_matches('"');
            if !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            {
                sections
                    .entry(current.clone())
                    .or_default()
                    .insert(key.to_owned());
            }
        }
    }
    (block.to_owned(), sections)
}

#[test]
fn readme_configuration_reference_names_every_config_field() {
    let (block, documented) = readme_config_block();
    // The block is a valid configuration as it stands.
    Config::from_toml(&block, "README.md configuration block").unwrap();
    // Fields that serialize only when set: the statistical rule's parameters, metric gates
    // and webhooks.
    let optional = Config::from_toml(
        "[policy]\nrule = \"statistical\"\nauto_retry = true\n[policy.statistical]\nalpha = 0.02\n\
         [[policy.metrics]]\nname = \"cost\"\nbad_above = 0.05\n\
         [[policy.metrics]]\nname = \"quality\"\nbad_below = 0.7\n\
         [[notify.webhooks]]\nname = \"a\"\nurl = \"http://h\"\nsecret = \"k\"\n\
         [[notify.webhooks]]\nname = \"b\"\nurl = \"http://h\"\nsecret_env = \"K\"\n",
        "optional fields",
    )
    .unwrap();
    let mut fields = BTreeSet::new();
    for config in [Config::default(), optional] {
        let value = toml::Value::try_from(&config).expect("Config serializes to TOML");
        keys(&value, "", &mut fields);
    }
    let mut missing = Vec::new();
    for (section, key) in &fields {
        if key.is_empty() {
            if !documented.contains_key(section) {
                missing.push(format!("[{section}]"));
            }
        } else if !documented.get(section).is_some_and(|k| k.contains(key)) {
            missing.push(if section.is_empty() {
                key.clone()
            } else {
                format!("{section}.{key}")
            });
        }
    }
    assert!(
        missing.is_empty(),
        "README.md's configuration block does not document: {missing:?} (add each with its \
         default and a comment)"
    );
    // And it documents nothing the structs do not have (a renamed field).
    for (section, keys) in &documented {
        for key in keys {
            let known =
                fields.contains(&(section.clone(), key.clone())) || section == "kafka.options"; // librdkafka properties, passed as is
            assert!(
                known,
                "README.md documents `{section}.{key}`, which Config has no field for"
            );
        }
    }
}
