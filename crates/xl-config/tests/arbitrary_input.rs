//! Arbitrary bytes and config-shaped text never make the parser panic or
//! hang: the answer is always a configuration or an error that names the
//! file (and, for syntax errors, a line inside the input).

use proptest::prelude::*;

fn check(data: &[u8]) {
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
    match xl_config::parse("fuzz.cfg", data) {
        Ok(p) => {
            let _ = p.xl_json();
            let _ = p.config.with_defaults();
        }
        Err(e) => {
            assert!(
                e.to_string().starts_with("fuzz.cfg"),
                "unlocated error: {e}"
            );
            if let xl_config::Error::Syntax { line, .. } = e {
                assert!(
                    line >= 1 && line <= lines,
                    "line {line} outside 1..={lines}"
                );
            }
        }
    }
}

/// Pieces of real xl.cfg syntax, so generated inputs get past the lexer.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("name = \"g\"\n".to_string()),
        Just("type = \"pvh\"\n".to_string()),
        Just("type = \"hvm\"\n".to_string()),
        Just("kernel = '/k'\n".to_string()),
        Just("memory = 0x100\n".to_string()),
        Just("vcpus = 2;".to_string()),
        Just("disk = [ 'phy:/dev/x,xvda,w', ".to_string()),
        Just("vif = [ 'mac=00:16:3e:00:00:01,rate=10Mb/s' ]\n".to_string()),
        Just("cpus = \"0-3,^1\"\n".to_string()),
        Just("timer_mode = 1\n".to_string()),
        Just("extra += \"x\"\n".to_string()),
        Just("]".to_string()),
        Just(",\n".to_string()),
        Just("# c\n".to_string()),
        "[a-z_]{1,8} = \"[ -~]{0,12}\"\n",
        "[a-z_]{1,8} = [0-9]{1,5}\n",
        "[ -~\n]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&data);
    }

    #[test]
    fn config_shaped_text_never_panics(parts in proptest::collection::vec(fragment(), 0..24)) {
        check(parts.concat().as_bytes());
    }
}

#[test]
fn deeply_nested_lists_are_refused_not_overflowed() {
    let data = format!("x = {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let start = std::time::Instant::now();
    assert!(xl_config::parse("deep.cfg", data.as_bytes()).is_err());
    // Generous bound: this is about not hanging, not about speed.
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn long_inputs_parse_in_linear_time() {
    let line = "extra += \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n";
    let data = format!("name=\"g\"\nkernel=\"/k\"\n{}", line.repeat(20_000));
    let start = std::time::Instant::now();
    assert!(xl_config::parse("long.cfg", data.as_bytes()).is_ok());
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

/// A value for the keys with their own item grammars: mostly the characters
/// those grammars split on, plus a non-ASCII one (byte slicing must not
/// split it).
fn spec_item() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9=,:;x+.\\- é]{0,40}",
        "0x[0-9a-f]{1,9}(,[0-9]{1,3})?:e[a-z]x=[01xks]{30,34}(, ?e[a-d]x=[01xksé]{31,33})?",
        "host(,[a-z0-9_.+\\-]{1,16}=[0-9a-zé\\-]{0,6}){0,6}",
        "((type|version|ports|hostbus|hostaddr|controller|port|backend|be-alloc)=[0-9a-zé\\-]{0,6},){0,5}",
        "connectors=([a-zé:]{0,4}:[ 0-9x\\-+]{0,9};){0,3}",
        "(card|pcm|stream|Pcm|x)(, ?(sample-rates|sample-formats|channels-min|buffer-size|name|type|unique-id|backend)=[0-9a-z_;é]{0,9}){0,4}",
        " ?=?(size|pnode|vcpus|vdistances|x) ?=+[ 0-9x,+\\-é]{0,24}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn cpuid_usb_vdispl_vsnd_vnuma_specs_never_panic(
        key in prop::sample::select(vec!["cpuid", "usbctrl", "usbdev", "vdispl", "vsnd", "vnuma"]),
        maxvcpus in prop::sample::select(vec!["", "maxvcpus = 4\n", "maxvcpus = 2147483648\n", "maxvcpus = 1048577\n"]),
        items in proptest::collection::vec(spec_item(), 0..4),
        as_list in any::<bool>(),
    ) {
        let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
        let value = if (key == "vsnd" || key == "vnuma") && as_list {
            // vsnd is a list of cards and vnuma one of nodes, each a list
            // of strings.
            format!("[ [ {} ], [ {} ] ]", quoted.join(", "), quoted.join(", "))
        } else if as_list || quoted.is_empty() {
            format!("[ {} ]", quoted.join(", "))
        } else {
            quoted[0].clone()
        };
        let text = format!("name = \"g\"\ntype = \"pvh\"\nkernel = \"/k\"\n{maxvcpus}{key} = {value}\n");
        check(text.as_bytes());
    }
}
