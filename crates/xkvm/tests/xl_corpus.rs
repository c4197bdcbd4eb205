//! `xkvm create -n` end to end over the xl.cfg corpus (tests/xl-config/):
//! the same exit status as Xen 4.17's `xl create -n` (except where xl
//! crashes: there we refuse with status 1) and, when it succeeds,
//! the same JSON document on stdout (compared as JSON; `uuid` ignored when
//! the file sets none). The library-level comparison, warnings included, is
//! crates/xl-config/tests/xl_corpus.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/xl-config")
}

fn sets_uuid(cfg: &str) -> bool {
    cfg.split(['\n', ';']).any(|l| {
        l.trim_start()
            .strip_prefix("uuid")
            .is_some_and(|r| r.trim_start().starts_with(['=', '+']))
    })
}

/// The status we must exit with where xl exits `xl_status`: the same,
/// except for xl's crashes (SIGABRT 134, SIGSEGV 139), which we turn into
/// an ordinary refusal.
fn expected_status(xl_status: i32) -> i32 {
    match xl_status {
        134 | 139 => 1,
        s => s,
    }
}

fn without_uuid(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(c) = v.get_mut("c_info").and_then(|c| c.as_object_mut()) {
        c.remove("uuid");
    }
    v
}

#[test]
fn create_dry_run_matches_xl_for_every_corpus_file() {
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
        let name = cfg
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let want_exit: i32 = std::fs::read_to_string(dir.join(format!("{name}.exit")))
            .expect("exit file")
            .trim()
            .parse()
            .expect("exit status");
        let overrides: Vec<String> = std::fs::read_to_string(dir.join(format!("{name}.args")))
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default();
        let out = Command::new(env!("CARGO_BIN_EXE_xkvm"))
            .current_dir(&dir)
            .args(["create", "-n", &format!("{name}.cfg")])
            .args(&overrides)
            .output()
            .expect("run xkvm");
        if out.status.code() != Some(expected_status(want_exit)) {
            failures.push(format!(
                "{name}: xl exits {want_exit}, xkvm {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        if want_exit != 0 {
            continue;
        }
        let text = std::fs::read_to_string(cfg).unwrap_or_default();
        let want: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{name}.expected.json")))
                .expect("expected json"),
        )
        .expect("oracle JSON");
        let got: serde_json::Value = match serde_json::from_slice(&out.stdout) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: stdout is not JSON: {e}"));
                continue;
            }
        };
        let (want, got) = if sets_uuid(&text) {
            (want, got)
        } else {
            (without_uuid(want), without_uuid(got))
        };
        if want != got {
            failures.push(format!("{name}: JSON differs from xl's"));
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

#[test]
fn create_dry_run_with_defaults_fills_libxl_defaults() {
    let out = Command::new(env!("CARGO_BIN_EXE_xkvm"))
        .current_dir(corpus_dir())
        .args(["create", "-n", "--defaults", "pvh_minimal.cfg"])
        .output()
        .expect("run xkvm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["b_info"]["timer_mode"], "no_delay_for_missed_ticks");
    assert_eq!(v["b_info"]["apic"], "True");
    assert_eq!(v["b_info"]["nested_hvm"], "False");
    assert_eq!(v["c_info"]["hap"], "True");
    assert_eq!(v["c_info"]["oos"], "True");
    assert_eq!(v["b_info"]["event_channels"], 1023);
    // 512 MiB, 1 vCPU: 1 MiB + 8 KiB per MiB.
    assert_eq!(v["b_info"]["shadow_memkb"], 1024 + 4096);
    assert_eq!(v["xkvm"]["xen_version"], "4.17");
}

#[test]
fn create_dry_run_errors_name_the_file_and_fail() {
    let out = Command::new(env!("CARGO_BIN_EXE_xkvm"))
        .current_dir(corpus_dir())
        .args(["create", "-n", "bad_timer_mode.cfg"])
        .output()
        .expect("run xkvm");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad_timer_mode.cfg: timer_mode: invalid value \"bogus\""),
        "{err}"
    );
}

#[test]
fn create_dry_run_exits_with_xls_status_for_the_refusal_site() {
    // xl: exit(-ERROR_FAIL) for a PV timer_mode, exit(-ERROR_INVAL) from
    // libxlu's PCI parser, ERROR_FAIL from create_domain for a missing file.
    for (cfg, status) in [
        ("bad_timer_mode_pv.cfg", 3),
        ("bad_pci_bdf_and_name.cfg", 6),
        ("no_such_file.cfg", 3),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_xkvm"))
            .current_dir(corpus_dir())
            .args(["create", "-n", cfg])
            .output()
            .expect("run xkvm");
        assert_eq!(
            out.status.code(),
            Some(status),
            "{cfg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn create_command_line_refusals_exit_as_xl_does() {
    // xl: no file is ERROR_INVAL from create_domain (6); a second file
    // name makes main_create print its help and return 2.
    for (args, status) in [
        (&["create", "-n"][..], 6),
        (&["create", "-n", "pvh_minimal.cfg", "other.cfg"][..], 2),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_xkvm"))
            .current_dir(corpus_dir())
            .args(args)
            .output()
            .expect("run xkvm");
        assert_eq!(
            out.status.code(),
            Some(status),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
