//! The console and XenStore rings end to end on /dev/kvm, with a
//! hand-assembled 32-bit guest: it writes its console ring and notifies the
//! console event channel (port from HVM_PARAM_CONSOLE_EVTCHN), then sends a
//! XenStore `XS_READ domid` on the store ring and prints the reply with
//! console_io. Skips without /dev/kvm unless CI=true.

use std::io::Write;

use vmm::elf::build::{image, NoteVia};
use vmm::{ConsoleIo, DomainExit, VmConfig};

mod common;
use common::{kvm_available, Buf};

const BASE: u32 = 0x10_0000;
const HCALL_PAGE: u32 = 0x20_0000;
const CONSOLE: u32 = 0xfefff000;
const STORE: u32 = 0xfeffc000;

// Data area offsets in the image.
const MSG: u32 = 0x800;
const PARAM: u32 = 0x900; // struct xen_hvm_param (16 bytes)
const SEND: u32 = 0x920; // struct evtchn_send
const REASON: u32 = 0x930;
const XSREQ: u32 = 0x940;

struct Asm(Vec<u8>);

impl Asm {
    fn here(&self) -> u32 {
        BASE + self.0.len() as u32
    }
    fn op(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn op_imm(&mut self, b: &[u8], v: u32) {
        self.op(b);
        self.op(&v.to_le_bytes());
    }
    fn hypercall(&mut self, nr: u32) {
        let next = self.here() + 5;
        self.op_imm(&[0xe8], (HCALL_PAGE + nr * 32).wrapping_sub(next));
    }
    /// mov dword [addr], imm
    fn store_imm(&mut self, addr: u32, v: u32) {
        self.op_imm(&[0xc7, 0x05], addr);
        self.op(&v.to_le_bytes());
    }
    /// Copies `len` bytes from image offset `src` to `dst` (rep movsb).
    fn copy(&mut self, src: u32, dst: u32, len: u32) {
        self.op_imm(&[0xbe], BASE + src);
        self.op_imm(&[0xbf], dst);
        self.op_imm(&[0xb9], len);
        self.op(&[0xf3, 0xa4]);
    }
    /// Reads HVM param `index` and does EVTCHNOP_send on it.
    fn notify_param(&mut self, index: u32) {
        self.store_imm(BASE + PARAM, 0x7ff0); // domid = DOMID_SELF, pad
        self.store_imm(BASE + PARAM + 4, index);
        self.op_imm(&[0xbb], 1); // HVMOP_get_param
        self.op_imm(&[0xb9], BASE + PARAM);
        self.hypercall(34); // hvm_op
        self.op_imm(&[0xa1], BASE + PARAM + 8); // mov eax, [value]
        self.op_imm(&[0xa3], BASE + SEND); // mov [send.port], eax
        self.op_imm(&[0xbb], 4); // EVTCHNOP_send
        self.op_imm(&[0xb9], BASE + SEND);
        self.hypercall(32); // event_channel_op
    }
}

fn xs_read_request(path: &str) -> Vec<u8> {
    let mut r = Vec::new();
    let payload = [path.as_bytes(), b"\0"].concat();
    for v in [
        2u32, /* XS_READ */
        7,    /* req_id */
        0,    /* tx_id */
        payload.len() as u32,
    ] {
        r.extend_from_slice(&v.to_le_bytes());
    }
    r.extend_from_slice(&payload);
    r
}

fn guest(msg: &[u8]) -> Vec<u8> {
    let req = xs_read_request("domid");
    let mut a = Asm(Vec::new());
    a.op_imm(&[0xbc], 0x8_0000); // mov esp
    a.op_imm(&[0xb9], 0x4000_0000); // hypercall page
    a.op_imm(&[0xb8], HCALL_PAGE);
    a.op(&[0x31, 0xd2, 0x0f, 0x30]);
    // Console: write the out ring (data at +1024), publish out_prod.
    a.copy(MSG, CONSOLE + 1024, msg.len() as u32);
    a.store_imm(CONSOLE + 3084, msg.len() as u32);
    a.notify_param(18); // HVM_PARAM_CONSOLE_EVTCHN
                        // XenStore: request on req ring (data at +0), publish req_prod (+2052).
    a.copy(XSREQ, STORE, req.len() as u32);
    a.store_imm(STORE + 2052, req.len() as u32);
    a.notify_param(2); // HVM_PARAM_STORE_EVTCHN
                       // Wait for rsp_prod (+2060) to move.
    let spin = a.0.len();
    a.op_imm(&[0x83, 0x3d], STORE + 2060);
    a.op(&[0x00]);
    let rel = (spin as i32 - (a.0.len() as i32 + 2)) as i8;
    a.op(&[0x74, rel as u8]); // je spin
                              // console_io(write, rsp header len, rsp payload)
    a.op_imm(&[0xbb], 0);
    a.op_imm(&[0x8b, 0x0d], STORE + 1024 + 12); // mov ecx, [len]
    a.op_imm(&[0xba], STORE + 1024 + 16);
    a.hypercall(18);
    a.op_imm(&[0xbb], 2); // SCHEDOP_shutdown, poweroff
    a.op_imm(&[0xb9], BASE + REASON);
    a.hypercall(29);
    a.op(&[0xf4, 0xeb, 0xfd]);
    let mut code = a.0;
    assert!(code.len() < MSG as usize);
    code.resize(0xa00, 0);
    code[MSG as usize..MSG as usize + msg.len()].copy_from_slice(msg);
    code[XSREQ as usize..XSREQ as usize + req.len()].copy_from_slice(&req);
    code
}

#[test]
fn console_ring_and_xenstore_ring_work() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = dir.path().join("kernel");
    let msg = b"console ring says hi\r\n";
    std::fs::write(
        &kernel,
        image(
            false,
            u64::from(BASE),
            &guest(msg),
            0,
            BASE,
            NoteVia::ProgramHeader,
        ),
    )
    .expect("write kernel");
    let mut cfg = VmConfig::new("rings", &kernel);
    cfg.domid = 7;
    let out = Buf::default();
    let outcome =
        vmm::run_domain(cfg, ConsoleIo::output_only(Box::new(out.clone()))).expect("run_domain");
    assert_eq!(outcome.exit, DomainExit::Poweroff);
    let console = out.0.lock().expect("lock").clone();
    assert_eq!(console, msg);
    assert_eq!(String::from_utf8_lossy(&outcome.hypervisor_log), "7");
}

/// Waits until three bytes of console input arrived in the `in` ring,
/// echoes them with console_io and powers off.
fn echo_guest() -> Vec<u8> {
    let mut a = Asm(Vec::new());
    a.op_imm(&[0xbc], 0x8_0000);
    a.op_imm(&[0xb9], 0x4000_0000);
    a.op_imm(&[0xb8], HCALL_PAGE);
    a.op(&[0x31, 0xd2, 0x0f, 0x30]);
    let spin = a.0.len();
    a.op_imm(&[0x83, 0x3d], CONSOLE + 3076); // cmp dword [in_prod], 3
    a.op(&[0x03]);
    let rel = (spin as i32 - (a.0.len() as i32 + 2)) as i8;
    a.op(&[0x72, rel as u8]); // jb spin
    a.op_imm(&[0xbb], 0);
    a.op_imm(&[0xb9], 3);
    a.op_imm(&[0xba], CONSOLE); // in ring data at offset 0
    a.hypercall(18);
    a.store_imm(CONSOLE + 3072, 3); // in_cons = 3
    a.op_imm(&[0xbb], 2);
    a.op_imm(&[0xb9], BASE + REASON);
    a.hypercall(29);
    a.op(&[0xf4, 0xeb, 0xfd]);
    let mut code = a.0;
    code.resize(0xa00, 0);
    code
}

#[test]
fn console_input_reaches_the_guest() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = dir.path().join("kernel");
    std::fs::write(
        &kernel,
        image(
            false,
            u64::from(BASE),
            &echo_guest(),
            0,
            BASE,
            NoteVia::ProgramHeader,
        ),
    )
    .expect("write kernel");
    let console = ConsoleIo {
        input: Some(Box::new(std::io::Cursor::new(b"abc".to_vec()))),
        output: Box::new(std::io::sink()),
    };
    let outcome = vmm::run_domain(VmConfig::new("echo", &kernel), console).expect("run_domain");
    assert_eq!(outcome.exit, DomainExit::Poweroff);
    assert_eq!(outcome.hypervisor_log, b"abc");
}

struct Broken;
impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn failing_console_output_is_reported_and_does_not_stall_the_guest() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = dir.path().join("kernel");
    std::fs::write(
        &kernel,
        image(
            false,
            u64::from(BASE),
            &guest(b"lost\n"),
            0,
            BASE,
            NoteVia::ProgramHeader,
        ),
    )
    .expect("write kernel");
    let err = vmm::run_domain(
        VmConfig::new("broken-console", &kernel),
        ConsoleIo::output_only(Box::new(Broken)),
    )
    .expect_err("console failure must be reported");
    assert!(matches!(err, vmm::VmmError::Console(_)), "{err}");
}
