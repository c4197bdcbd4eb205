//! Where the test guests are, for humans and scripts:
//! `xkvm-guests` lists them, `xkvm-guests path NAME` prints one image's path,
//! `xkvm-guests install DIR` copies every image into DIR (scripts/demo.sh
//! uses it to give guests/demo.cfg a stable kernel path).

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => {
            for (name, path) in xkvm_guests::GUESTS {
                println!("{name}\t{path}");
            }
            ExitCode::SUCCESS
        }
        ["path", name] => match xkvm_guests::try_path(name) {
            Some(p) => {
                println!("{}", p.display());
                ExitCode::SUCCESS
            }
            None => {
                eprintln!(
                    "xkvm-guests: no guest named {name:?}; the guests are {:?}",
                    xkvm_guests::names()
                );
                ExitCode::FAILURE
            }
        },
        ["install", dir] => install(Path::new(dir)),
        _ => {
            eprintln!("usage: xkvm-guests [path NAME | install DIR]");
            ExitCode::from(2)
        }
    }
}

fn install(dir: &Path) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("xkvm-guests: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for (name, path) in xkvm_guests::GUESTS {
        let to = dir.join(name);
        if let Err(e) = std::fs::copy(path, &to) {
            eprintln!("xkvm-guests: cannot copy {path} to {}: {e}", to.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
