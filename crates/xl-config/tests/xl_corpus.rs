//! Every config in tests/xl-config/ against the oracle's recorded answer
//! (Xen 4.17's `xl create -n`): same exit status (where xl crashes, 134 or
//! 139, we refuse with 1), same JSON document
//! (compared as JSON; `uuid` ignored when the file sets none, since xl makes
//! up a random one).

use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/xl-config")
}

fn strip_generated_uuid(v: &mut serde_json::Value) {
    if let Some(c) = v.get_mut("c_info").and_then(|c| c.as_object_mut()) {
        c.remove("uuid");
    }
}

#[test]
fn corpus_matches_xl_create_dry_run() {
    let dir = corpus_dir();
    let mut cfgs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cfg"))
        .collect();
    cfgs.sort();
    assert!(cfgs.len() >= 60, "corpus has only {} configs", cfgs.len());
    let mut failures = Vec::new();
    for cfg in &cfgs {
        let name = cfg.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let exit: i32 = std::fs::read_to_string(dir.join(format!("{name}.exit")))
            .expect("exit file")
            .trim()
            .parse()
            .expect("exit status");
        let overrides: Vec<String> = std::fs::read_to_string(dir.join(format!("{name}.args")))
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default();
        let data = std::fs::read(cfg).expect("read config");
        let source = format!("{name}.cfg");
        // Parse under the bare file name, as the oracle was run, so that
        // warnings naming the file compare equal.
        let ours = xl_config::parse(&source, &xl_config::with_overrides(&data, &overrides));
        match (ours, exit) {
            (Ok(p), 0) => {
                let text = std::fs::read_to_string(dir.join(format!("{name}.expected.json")))
                    .expect("expected json");
                let mut want: serde_json::Value = serde_json::from_str(&text).expect("oracle JSON");
                let mut got: serde_json::Value =
                    serde_json::from_str(&p.xl_json()).expect("our JSON parses");
                if !p.config.c_info.uuid_from_config {
                    strip_generated_uuid(&mut want);
                    strip_generated_uuid(&mut got);
                }
                let stderr = std::fs::read_to_string(dir.join(format!("{name}.expected.stderr")))
                    .expect("expected stderr");
                let want_warnings: Vec<&str> = stderr.lines().collect();
                if want_warnings != p.warnings {
                    failures.push(format!(
                        "{name}: warnings differ\n--- xl\n{}\n--- xkvm\n{}",
                        want_warnings.join("\n"),
                        p.warnings.join("\n")
                    ));
                }
                check_defaults(name, &p.config, &mut failures);
                if want != got {
                    failures.push(format!(
                        "{name}: JSON differs\n--- xl\n{}\n--- xkvm\n{}",
                        serde_json::to_string_pretty(&want).unwrap_or_default(),
                        serde_json::to_string_pretty(&got).unwrap_or_default()
                    ));
                }
            }
            (Err(e), code) if code != 0 => {
                // Our errors always name the file.
                if !e.to_string().starts_with(&source) {
                    failures.push(format!("{name}: error does not name the file: {e}"));
                }
                let want = if matches!(code, 134 | 139) { 1 } else { code };
                if i32::from(e.exit_status()) != want {
                    failures.push(format!(
                        "{name}: xl exits {code}, we would exit {}: {e}",
                        e.exit_status()
                    ));
                }
            }
            (Ok(_), code) => failures.push(format!("{name}: xl exits {code}, we accepted it")),
            (Err(e), _) => failures.push(format!("{name}: xl accepts it, we refused: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        cfgs.len(),
        failures.join("\n")
    );
}

/// Whatever the file said, the defaulted configuration is complete and
/// consistent in the ways the VMM relies on.
fn check_defaults(name: &str, d: &xl_config::DomainConfig, failures: &mut Vec<String>) {
    let d = d.clone().with_defaults();
    let b = &d.b_info;
    let mut problems = Vec::new();
    if b.max_vcpus == 0 || b.avail_vcpus.is_empty() {
        problems.push("no vCPUs");
    }
    if b.max_memkb.is_none() || b.target_memkb.is_none() || b.shadow_memkb.is_none() {
        problems.push("memory unset");
    }
    if b.event_channels == 0 || b.max_grant_frames.is_none() {
        problems.push("evtchn/grant limits unset");
    }
    if d.c_info.type_ != xl_config::DomainType::Pv
        && (b.timer_mode.is_none()
            || b.apic.is_none()
            || b.nested_hvm.is_none()
            || d.c_info.hap.is_none()
            || d.c_info.oos.is_none())
    {
        problems.push("HVM-style defaults missing");
    }
    if !problems.is_empty() {
        failures.push(format!("{name}: after defaults: {}", problems.join(", ")));
    }
}

#[test]
fn load_reads_a_file_and_applies_overrides_after_it() {
    let path = corpus_dir().join("pvh_minimal.cfg");
    let p =
        xl_config::load(&path, &["memory=2048".into(), "name=\"other\"".into()]).expect("loads");
    assert_eq!(p.config.b_info.target_memkb, Some(2048 * 1024));
    assert_eq!(p.config.c_info.name, "other");
    let err = xl_config::load(&corpus_dir().join("does-not-exist.cfg"), &[]).expect_err("missing");
    assert!(err.to_string().contains("does-not-exist.cfg"));
}

#[test]
fn errors_name_file_line_and_key() {
    let e = xl_config::parse("guest.cfg", b"name=\"g\"\nkernel=\"/k\"\nmemory = 12junk\n")
        .expect_err("junk");
    assert_eq!(e.line(), Some(3));
    assert!(
        e.to_string()
            .starts_with("guest.cfg:3: syntax error near 'junk'"),
        "{e}"
    );
    let e = xl_config::parse(
        "guest.cfg",
        b"name=\"g\"\ntype=\"pvh\"\nkernel=\"/k\"\ntimer_mode=\"bogus\"\n",
    )
    .expect_err("bad timer mode");
    assert_eq!(e.line(), Some(4));
    assert!(
        e.to_string().starts_with("guest.cfg: timer_mode: invalid value \"bogus\" (expected one of delay_for_missed_ticks,"),
        "{e}"
    );
}

#[test]
fn xkvm_keys_are_typed_but_invisible_to_xl_json() {
    let p = xl_config::parse(
        "g.cfg",
        b"name=\"g\"\ntype=\"pvh\"\nkernel=\"/k\"\nxen_version=\"4.13\"\nxen_vapic=1\nxen_evtchn_max_pirq=64\napic=0\n",
    )
    .expect("valid");
    assert_eq!(p.config.xkvm.xen_version, (4, 13));
    assert_eq!(p.config.xkvm.xen_vapic, Some(true));
    assert_eq!(p.config.xkvm.xen_evtchn_max_pirq, 64);
    assert_eq!(p.config.b_info.apic, Some(false), "PVH keeps apic");
    let xl = p.xl_json();
    assert!(
        !xl.contains("xen_version") && !xl.contains("\"apic\""),
        "{xl}"
    );
    let full =
        xl_config::json::to_json(&p.config.clone().with_defaults(), xl_config::Flavour::Full);
    assert_eq!(full["b_info"]["apic"], "False");
    assert_eq!(full["xkvm"]["xen_evtchn_max_pirq"], 64);
    let d = xl_config::parse("g.cfg", b"name=\"g\"\ntype=\"pvh\"\nkernel=\"/k\"\n").expect("valid");
    assert_eq!(d.config.xkvm.xen_version, (4, 17));
    assert_eq!(d.config.xkvm.xen_evtchn_max_pirq, 256);
}
