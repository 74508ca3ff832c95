//! Tidy checks run by `cargo test`: the layering of the workspace, the crates each layer may use,
//! and the `//!` line every source file opens with.

use std::path::{Path, PathBuf};

use cargo_metadata::{DependencyKind, MetadataCommand};

/// Each crate's layer; a crate may depend only on crates of a lower rank.
const RANKS: &[(&str, u8)] = &[
    ("batch-format", 0),
    ("batch-client", 1),
    ("openai-sim", 1),
    ("batch-queue", 2),
    ("providers", 3),
    ("orchestrator", 4),
    ("server", 5),
    ("batchbeam", 6),
];

/// External crates only some layers may use directly: (crate, the packages allowed to).
const RESTRICTED: &[(&str, &[&str])] = &[
    ("reqwest", &["batch-client", "providers"]),
    ("axum", &["openai-sim", "server"]),
];

/// The one crate any layer may use as a dev-dependency, whatever its rank.
const TEST_DOUBLE: &str = "openai-sim";

fn rank(name: &str) -> Option<u8> {
    RANKS.iter().find(|(n, _)| *n == name).map(|&(_, r)| r)
}

/// One dependency edge of a workspace package.
struct Edge<'a> {
    from: &'a str,
    to: &'a str,
    dev: bool,
}

/// Every rule the edges break, as readable lines.
fn check_edges(edges: &[Edge<'_>]) -> Vec<String> {
    let mut problems = Vec::new();
    for e in edges {
        let Some(from_rank) = rank(e.from) else {
            continue; // xtask and the integration-test crate sit outside the layers
        };
        if e.dev && e.from == e.to {
            continue; // a crate turning on its own features for its tests
        }
        if let Some(to_rank) = rank(e.to)
            && to_rank >= from_rank
            && !(e.dev && e.to == TEST_DOUBLE)
        {
            problems.push(format!(
                "{} (rank {from_rank}) depends on {} (rank {to_rank}): a crate may only depend on lower layers",
                e.from, e.to
            ));
        }
        if !e.dev
            && let Some((_, allowed)) = RESTRICTED.iter().find(|(c, _)| *c == e.to)
            && !allowed.contains(&e.from)
        {
            problems.push(format!(
                "{} depends on {}, which only {} may use",
                e.from,
                e.to,
                allowed.join(" and ")
            ));
        }
    }
    problems
}

#[test]
fn layers_only_point_down() {
    let metadata = MetadataCommand::new()
        .manifest_path(crate::util::project_root().join("Cargo.toml"))
        .no_deps()
        .exec()
        .expect("cargo metadata");
    let mut edges = Vec::new();
    for pkg in metadata.workspace_packages() {
        for dep in &pkg.dependencies {
            edges.push(Edge {
                from: &pkg.name,
                to: &dep.name,
                dev: dep.kind == DependencyKind::Development,
            });
        }
    }
    // Every layered crate must exist, or the table above is stale.
    for (name, _) in RANKS {
        assert!(
            metadata
                .workspace_packages()
                .iter()
                .any(|p| p.name.as_str() == *name),
            "tidy's layer table names `{name}`, which is not a workspace package"
        );
    }
    let problems = check_edges(&edges);
    assert!(
        problems.is_empty(),
        "layering violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_layer_check_catches_upward_sideways_and_banned_edges() {
    let edge = |from, to, dev| Edge { from, to, dev };
    let problems = check_edges(&[
        edge("batch-format", "batch-client", false), // upward
        edge("batch-client", "openai-sim", false),   // sideways, normal
        edge("batch-queue", "reqwest", false),       // banned crate
        edge("orchestrator", "axum", false),         // banned crate
        edge("orchestrator", "server", true),        // upward even as a dev-dependency
    ]);
    assert_eq!(problems.len(), 5, "{problems:#?}");
    let fine = check_edges(&[
        edge("batch-queue", "batch-client", false),
        edge("batch-client", "openai-sim", true), // the test double, as a dev-dependency
        edge("batch-client", "reqwest", false),
        edge("server", "axum", false),
        edge("batch-format", "reqwest", true), // dev-dependencies may speak HTTP in tests
        edge("xtask", "batchbeam", false),
    ]);
    assert!(fine.is_empty(), "{fine:#?}");
}

#[test]
fn every_source_file_opens_with_a_doc_line() {
    let root = crate::util::project_root();
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(
        !files.is_empty(),
        "found no .rs files under {}",
        root.display()
    );
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !opens_with_doc_line(f))
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` line saying what they are for:\n{}",
        missing.join("\n")
    );
}

fn opens_with_doc_line(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.starts_with("//!"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// What marks a file as stepping the simulator's clock by hand.
const CLOCK_STEPS: &[&str] = &[
    "advance_clock(",
    "/sim/clock/advance",
    "ctx.advance(",
    "Clock::start(",
];

/// The simulator configurations in `text` that a file stepping the clock leaves running on wall
/// time: a `SimConfig::default()` whose expression neither freezes the clock nor sets a scale.
fn wall_clock_configs(text: &str) -> Vec<usize> {
    if !CLOCK_STEPS.iter().any(|s| text.contains(s)) {
        return Vec::new();
    }
    let mut lines = Vec::new();
    for (at, _) in text.match_indices("SimConfig::default()") {
        let rest = &text[at..];
        let expr = &rest[..rest.find(';').unwrap_or(rest.len())];
        if !expr.contains("with_frozen_clock()") && !expr.contains("with_time_scale(") {
            lines.push(text[..at].lines().count().max(1));
        }
    }
    lines
}

#[test]
fn tests_that_step_the_clock_freeze_it() {
    let root = crate::util::project_root();
    let mut files = Vec::new();
    for dir in ["crates", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    let openai_sim_src = root.join("crates/openai-sim/src");
    let mut problems = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&openai_sim_src)) {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in wall_clock_configs(&text) {
            problems.push(format!(
                "{}:{line}",
                file.strip_prefix(&root).unwrap_or(file).display()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "these simulators run on wall time in a file that steps their clock by hand; add \
         `.with_frozen_clock()` so that the test cannot race the machine's speed:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_clock_rule_sees_a_running_clock_beside_a_manual_step() {
    let racing =
        "let sim = spawn(SimConfig::default().with_seed(1)).await;\nsim.advance_clock(5.0).await;";
    assert_eq!(wall_clock_configs(racing), vec![1]);
    let frozen = "let sim = spawn(SimConfig::default()\n    .with_frozen_clock()).await;\nsim.advance_clock(5.0).await;";
    assert!(wall_clock_configs(frozen).is_empty());
    let untouched = "let sim = spawn(SimConfig::default()).await;";
    assert!(wall_clock_configs(untouched).is_empty());
}

/// The commands a README code line starts with `cargo ` in, in order.
fn readme_cargo_commands(readme: &str) -> Vec<&str> {
    let mut in_code = false;
    let mut commands = Vec::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if in_code && line.starts_with("cargo ") {
            commands.push(line.trim_end());
        }
    }
    commands
}

#[test]
fn ci_runs_the_readmes_two_commands() {
    let root = crate::util::project_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let ci = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    let commands = readme_cargo_commands(&readme);
    assert!(
        commands.len() >= 2,
        "the README should open with two `cargo` commands (the main job and the test command), found {commands:?}"
    );
    assert!(
        commands[..2].contains(&"cargo xtask ci"),
        "one of the README's first two commands is the test command `cargo xtask ci`: {commands:?}"
    );
    for command in &commands[..2] {
        assert!(
            ci.lines().any(|l| l.trim() == *command),
            "the README's command `{command}` is not run by .ci/run"
        );
    }
}

/// Heavy crates a library may pull in through its normal dependencies, per library crate: a
/// service that reuses one of our crates compiles all of these. A new entry is a decision, made
/// here with a reason, never an accident of a new dependency.
const HEAVY: &[&str] = &["axum", "hyper", "image", "tiktoken-rs"];
const HEAVY_ALLOWED: &[(&str, &[&str])] = &[
    // Token estimates for validation and splitting: a build dependency only (the build script
    // writes its vocabularies as tables the crate reads in place).
    ("batch-format", &["tiktoken-rs"]),
    // reqwest speaks HTTP through hyper.
    ("batch-client", &["hyper", "tiktoken-rs"]),
    // The simulator is a web server.
    ("openai-sim", &["axum", "hyper", "tiktoken-rs"]),
    ("batch-queue", &["hyper", "tiktoken-rs"]),
    // The simulated transport (openai-sim, so axum) is behind the `simulated` feature.
    ("providers", &["hyper", "tiktoken-rs"]),
    // image: judge images are downscaled before they are sent.
    ("orchestrator", &["hyper", "image", "tiktoken-rs"]),
    // The server is a web server (axum, hyper) over the orchestrator (image) and providers.
    ("server", &["axum", "hyper", "image", "tiktoken-rs"]),
];

/// The packages `krate` pulls in through normal and build dependencies with its default
/// features, as a service reusing it would build it. `cargo tree -p` resolves features for
/// that package alone; `cargo metadata` would unify them across the workspace (the binary
/// turns on providers' `simulated`), which is not what a reuser compiles.
fn pulled_by(krate: &str) -> std::collections::BTreeSet<String> {
    let output = crate::util::cargo()
        .current_dir(crate::util::project_root())
        .args(["tree", "-p", krate, "-e", "normal,build", "--target", "all"])
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .expect("cargo tree");
    assert!(
        output.status.success(),
        "cargo tree -p {krate}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != krate)
        .map(str::to_owned)
        .collect()
}

#[test]
fn library_crates_pull_only_the_heavy_dependencies_they_are_allowed() {
    let metadata = MetadataCommand::new()
        .manifest_path(crate::util::project_root().join("Cargo.toml"))
        .no_deps()
        .exec()
        .expect("cargo metadata");
    let mut problems = Vec::new();
    for (krate, allowed) in HEAVY_ALLOWED {
        assert!(
            metadata
                .workspace_packages()
                .iter()
                .any(|p| p.name.as_str() == *krate),
            "tidy's heavy-dependency table names `{krate}`"
        );
        let pulled = pulled_by(krate);
        for heavy in HEAVY {
            if pulled.contains(*heavy) && !allowed.contains(heavy) {
                problems.push(format!(
                    "{krate} now pulls in {heavy}; every service reusing {krate} would compile it (allow it in tidy.rs with a reason, or keep it out)"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn only_the_binary_and_xtask_use_anyhow() {
    let metadata = MetadataCommand::new()
        .manifest_path(crate::util::project_root().join("Cargo.toml"))
        .no_deps()
        .exec()
        .expect("cargo metadata");
    let users: Vec<String> = metadata
        .workspace_packages()
        .iter()
        .filter(|p| {
            p.dependencies
                .iter()
                .any(|d| d.name == "anyhow" && d.kind == DependencyKind::Normal)
        })
        .map(|p| p.name.to_string())
        .filter(|n| !["batchbeam", "xtask", "xtask-worker"].contains(&n.as_str()))
        .collect();
    assert!(
        users.is_empty(),
        "library crates have one thiserror type each, never anyhow: {users:?}"
    );
}

/// Crates the orchestrator must not name: it sees models only through the provider traits and
/// the stage barrier (providers' `StageBarrier`), never the batch queue or the HTTP client.
const ORCHESTRATOR_BANNED: &[&str] = &["batch-queue", "batch-client"];

/// The orchestrator's edges to the crates below providers that it must not name, as problems.
fn orchestrator_reaches_past_providers(edges: &[Edge<'_>]) -> Vec<String> {
    edges
        .iter()
        .filter(|e| e.from == "orchestrator" && ORCHESTRATOR_BANNED.contains(&e.to))
        .map(|e| {
            let kind = if e.dev { "dev-dependency" } else { "dependency" };
            format!(
                "orchestrator has a {kind} on {}: it goes through providers (the provider traits and StageBarrier)",
                e.to
            )
        })
        .collect()
}

#[test]
fn the_orchestrator_sees_providers_only() {
    let metadata = MetadataCommand::new()
        .manifest_path(crate::util::project_root().join("Cargo.toml"))
        .no_deps()
        .exec()
        .expect("cargo metadata");
    let orchestrator = metadata
        .workspace_packages()
        .into_iter()
        .find(|p| p.name.as_str() == "orchestrator")
        .expect("an orchestrator package");
    let edges: Vec<Edge<'_>> = orchestrator
        .dependencies
        .iter()
        .map(|d| Edge {
            from: "orchestrator",
            to: &d.name,
            dev: d.kind == DependencyKind::Development,
        })
        .collect();
    let problems = orchestrator_reaches_past_providers(&edges);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The check itself: normal and dev edges are both caught, providers is fine.
    let caught = orchestrator_reaches_past_providers(&[
        Edge {
            from: "orchestrator",
            to: "batch-queue",
            dev: false,
        },
        Edge {
            from: "orchestrator",
            to: "batch-client",
            dev: true,
        },
        Edge {
            from: "orchestrator",
            to: "providers",
            dev: false,
        },
        Edge {
            from: "server",
            to: "batch-queue",
            dev: false,
        },
    ]);
    assert_eq!(caught.len(), 2, "{caught:#?}");
}

/// The server, like the orchestrator, sees the batch queue and the HTTP client only through
/// providers (its `Stack`): it may not name them, not even to test.
#[test]
fn the_server_sees_orchestrator_and_providers_only() {
    let metadata = MetadataCommand::new()
        .manifest_path(crate::util::project_root().join("Cargo.toml"))
        .no_deps()
        .exec()
        .expect("cargo metadata");
    let server = metadata
        .workspace_packages()
        .into_iter()
        .find(|p| p.name.as_str() == "server")
        .expect("a server package");
    let named: Vec<String> = server
        .dependencies
        .iter()
        .filter(|d| ORCHESTRATOR_BANNED.contains(&d.name.as_str()))
        .map(|d| d.name.to_string())
        .collect();
    assert!(
        named.is_empty(),
        "server depends on {named:?}: it goes through providers' Stack and the orchestrator"
    );
}

/// What reads the environment (or has clap read it for a flag).
const ENV_READS: &[&str] = &[
    "env::var(",
    "env::var_os(",
    "env::vars(",
    "env::vars_os(",
    "env = \"",
];

/// The one module allowed to read the environment: every setting is read there, once.
const SETTINGS_MODULE: &str = "crates/providers/src/settings";

/// The lines of `text` that read the environment.
fn env_reads(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.split("//").next().unwrap_or_default();
            ENV_READS.iter().any(|r| code.contains(r))
        })
        .map(|(i, _)| i + 1)
        .collect()
}

#[test]
fn only_the_settings_module_reads_the_environment() {
    let root = crate::util::project_root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap_or(file);
        // Test code may set up its own environment; the settings module is the reader.
        let in_tests = rel
            .components()
            .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "tests.rs");
        // A build script reads what cargo gives it (`OUT_DIR`), not the user's configuration.
        let build_script = rel.file_name().is_some_and(|n| n == "build.rs")
            && rel.parent().and_then(Path::parent) == Some(Path::new("crates"));
        if in_tests || build_script || rel.starts_with(SETTINGS_MODULE) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in env_reads(&text) {
            problems.push(format!("{}:{line}", rel.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "these lines read the environment; every setting is read once, by providers::settings \
         (add it to its SETTINGS table and take the typed value), and a flag that is a setting \
         is passed to it as its top layer rather than given clap's `env = \"…\"`:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_environment_rule_sees_reads_and_clap_attributes() {
    let text = "let a = std::env::var(\"X\");\n// std::env::var(\"Y\") in a comment\n#[arg(long, env = \"BATCHBEAM_DB\")]\nlet p = std::env::var_os(\"P\");";
    assert_eq!(env_reads(text), vec![1, 3, 4]);
    assert!(env_reads("let d = std::env::temp_dir();").is_empty());
}
