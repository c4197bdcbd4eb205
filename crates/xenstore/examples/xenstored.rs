//! A bare daemon for development and benchmarks, independent of the rest
//! of xkvm: `cargo run --release -p xenstore --example xenstored -- --socket PATH`.
//! (The user-facing verb is `xkvm xenstored --socket PATH`.) Stops on
//! SIGTERM/SIGINT via the default signal action.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let path = match args.as_slice() {
        [flag, p] if flag == "--socket" => p.clone(),
        [p] => p.clone(),
        _ => {
            eprintln!("usage: xenstored --socket PATH");
            std::process::exit(2);
        }
    };
    let server = match xenstore::socket::serve(xenstore::Engine::default(), path.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xenstored: {e}");
            std::process::exit(1);
        }
    };
    server.join();
}
