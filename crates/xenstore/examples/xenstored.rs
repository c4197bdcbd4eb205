//! A bare daemon for development and benchmarks:
//! `cargo run --release -p xenstore --example xenstored -- SOCKET`.
//! (The user-facing verb is `xkvm xenstored --socket PATH`.) Stops on
//! SIGTERM/SIGINT via the default signal action.

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: xenstored SOCKET");
        std::process::exit(2);
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
