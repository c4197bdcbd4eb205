//! The Xen platform PCI device (QEMU's `xen-platform`) and its fixed I/O
//! ports, for HVM guests (`docs/misc/hvm-emulated-unplug.pandoc`): PV
//! drivers find the device (vendor 0x5853, device 0x0001), check the magic
//! at port 0x10, read the protocol version at 0x12, report their product and
//! build number, and then write an unplug mask to 0x10 so that the same disk
//! or NIC is no longer also offered by an emulated controller.
//!
//! This is the device model only (no KVM): the VMM routes port I/O at
//! 0x10..=0x13 and PCI configuration accesses here, and asks
//! [`PlatformPci::unplugged`] which emulated devices to remove.

/// PCI identity (`xen_platform.c`).
pub const VENDOR_ID: u16 = 0x5853;
pub const DEVICE_ID: u16 = 0x0001;
pub const REVISION: u8 = 1;
/// `PCI_CLASS_OTHERS` (0xff) subclass 0x80.
pub const CLASS: [u8; 3] = [0x00, 0x80, 0xff];
/// The fixed port range.
pub const PORT_BASE: u16 = 0x10;
pub const PORT_LEN: u16 = 4;
/// Read from port 0x10 (16-bit).
pub const MAGIC: u16 = 0x49d2;
/// What port 0x10 reads once the drivers have been blacklisted.
pub const MAGIC_BLACKLISTED: u16 = 0xd249;
/// Protocol version at port 0x12.
pub const PROTOCOL_VERSION: u8 = 1;
/// BAR sizes: 0 = I/O ports, 1 = MMIO (grant-table and shared-info space).
pub const BAR0_SIZE: u32 = 0x100;
pub const BAR1_SIZE: u32 = 0x0100_0000;

/// Unplug mask bits written to port 0x10.
pub mod unplug {
    pub const ALL_IDE_DISKS: u16 = 1;
    pub const ALL_NICS: u16 = 2;
    pub const AUX_IDE_DISKS: u16 = 4;
    pub const ALL_NVME_DISKS: u16 = 8;
}

/// What the guest asked to unplug so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unplugged {
    /// Every emulated IDE disk (not CD-ROMs).
    pub ide_disks: bool,
    /// IDE disks except the primary master.
    pub aux_ide_disks: bool,
    pub nics: bool,
    pub nvme_disks: bool,
}

/// The device's state.
#[derive(Debug, Clone)]
pub struct PlatformPci {
    config: [u8; 256],
    flags: u8,
    product: Option<u16>,
    build: Option<u32>,
    /// Products whose drivers must not unplug (the blacklist mechanism).
    blacklist: Vec<u16>,
    blacklisted: bool,
    unplugged: Unplugged,
    log_line: Vec<u8>,
    log: Vec<String>,
}

impl Default for PlatformPci {
    fn default() -> Self {
        Self::new()
    }
}

impl PlatformPci {
    pub fn new() -> Self {
        let mut c = [0u8; 256];
        c[0..2].copy_from_slice(&VENDOR_ID.to_le_bytes());
        c[2..4].copy_from_slice(&DEVICE_ID.to_le_bytes());
        c[8] = REVISION;
        c[9..12].copy_from_slice(&CLASS);
        // BAR0: I/O space; BAR1: prefetchable 32-bit memory.
        c[0x10] = 0x01;
        c[0x14] = 0x08;
        c[0x2c..0x2e].copy_from_slice(&VENDOR_ID.to_le_bytes());
        c[0x2e..0x30].copy_from_slice(&DEVICE_ID.to_le_bytes());
        c[0x3d] = 1; // INTA#
        Self {
            config: c,
            flags: 0,
            product: None,
            build: None,
            blacklist: Vec::new(),
            blacklisted: false,
            unplugged: Unplugged::default(),
            log_line: Vec::new(),
            log: Vec::new(),
        }
    }

    /// Products to refuse (their drivers see the magic change and must not
    /// unplug).
    pub fn with_blacklist(mut self, products: &[u16]) -> Self {
        self.blacklist = products.to_vec();
        self
    }

    pub fn unplugged(&self) -> Unplugged {
        self.unplugged
    }

    /// `(product, build)` the drivers reported.
    pub fn driver(&self) -> (Option<u16>, Option<u32>) {
        (self.product, self.build)
    }

    /// Lines the guest wrote to the log port.
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// A read of `size` (1, 2 or 4) bytes at fixed port `port`.
    pub fn io_read(&self, port: u16, size: u8) -> u32 {
        match (port.wrapping_sub(PORT_BASE), size) {
            (0, 2) => u32::from(if self.blacklisted {
                MAGIC_BLACKLISTED
            } else {
                MAGIC
            }),
            (0, 1) => u32::from(self.flags),
            (2, 1) => u32::from(PROTOCOL_VERSION),
            (_, 1) => 0xff,
            (_, 2) => 0xffff,
            _ => 0xffff_ffff,
        }
    }

    /// A write of `size` bytes at fixed port `port`.
    pub fn io_write(&mut self, port: u16, size: u8, value: u32) {
        match (port.wrapping_sub(PORT_BASE), size) {
            (0, 2) => {
                if self.blacklisted {
                    return;
                }
                let m = value as u16;
                let u = &mut self.unplugged;
                u.ide_disks |= m & unplug::ALL_IDE_DISKS != 0;
                u.aux_ide_disks |= m & unplug::AUX_IDE_DISKS != 0;
                u.nics |= m & unplug::ALL_NICS != 0;
                u.nvme_disks |= m & unplug::ALL_NVME_DISKS != 0;
            }
            (2, 2) => {
                let p = value as u16;
                self.product = Some(p);
                self.blacklisted = self.blacklist.contains(&p);
            }
            (0, 4) => self.build = Some(value),
            // Platform flags: only the ROM-lock bit is kept, as QEMU.
            (0, 1) => self.flags = (value as u8) & 1,
            (2, 1) => {
                let b = value as u8;
                if b == b'\n' || self.log_line.len() >= 1024 {
                    let line = String::from_utf8_lossy(&self.log_line).into_owned();
                    self.log_line.clear();
                    tracing::info!("guest platform log: {line}");
                    self.log.push(line);
                } else {
                    self.log_line.push(b);
                }
            }
            _ => {}
        }
    }

    /// A PCI configuration space read (`offset` aligned to `size`).
    pub fn config_read(&self, offset: u8, size: u8) -> u32 {
        let o = usize::from(offset);
        let n = usize::from(size.min(4));
        let mut v = [0u8; 4];
        for (i, b) in v.iter_mut().enumerate().take(n) {
            *b = self.config.get(o + i).copied().unwrap_or(0xff);
        }
        u32::from_le_bytes(v)
    }

    /// A PCI configuration space write: command/status, the two BARs
    /// (with their size masks, so sizing works) and the interrupt line.
    pub fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        let bytes = value.to_le_bytes();
        for (i, &b) in bytes.iter().enumerate().take(usize::from(size.min(4))) {
            let o = usize::from(offset) + i;
            match o {
                0x04 | 0x05 | 0x3c => self.config[o] = b,
                0x10..=0x13 => self.bar_byte(0x10, BAR0_SIZE, 0x01, o, b),
                0x14..=0x17 => self.bar_byte(0x14, BAR1_SIZE, 0x08, o, b),
                _ => {}
            }
        }
    }

    fn bar_byte(&mut self, base: usize, size: u32, low: u32, o: usize, b: u8) {
        let mut cur = [0u8; 4];
        cur.copy_from_slice(&self.config[base..base + 4]);
        cur[o - base] = b;
        let v = (u32::from_le_bytes(cur) & !(size - 1)) | low;
        self.config[base..base + 4].copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_as_xens_platform_device() {
        let d = PlatformPci::new();
        assert_eq!(d.config_read(0, 4), 0x0001_5853);
        assert_eq!(d.config_read(8, 4) >> 8, 0x00ff_8000);
        assert_eq!(d.config_read(0x2c, 4), 0x0001_5853);
        assert_eq!(d.config_read(0x3d, 1), 1);
    }

    #[test]
    fn unplug_protocol_as_the_pandoc_describes() {
        let mut d = PlatformPci::new();
        assert_eq!(d.io_read(0x10, 2), 0x49d2);
        assert_eq!(d.io_read(0x12, 1), 1);
        d.io_write(0x12, 2, 3);
        d.io_write(0x10, 4, 0x1234);
        assert_eq!(d.io_read(0x10, 2), 0x49d2, "not blacklisted");
        d.io_write(0x10, 2, u32::from(unplug::ALL_IDE_DISKS | unplug::ALL_NICS));
        assert_eq!(
            d.unplugged(),
            Unplugged {
                ide_disks: true,
                aux_ide_disks: false,
                nics: true,
                nvme_disks: false
            }
        );
        assert_eq!(d.driver(), (Some(3), Some(0x1234)));
    }

    #[test]
    fn blacklisted_drivers_see_the_magic_change_and_cannot_unplug() {
        let mut d = PlatformPci::new().with_blacklist(&[7]);
        d.io_write(0x12, 2, 7);
        assert_eq!(d.io_read(0x10, 2), u32::from(MAGIC_BLACKLISTED));
        d.io_write(0x10, 2, 0xf);
        assert_eq!(d.unplugged(), Unplugged::default());
    }

    #[test]
    fn bars_size_like_pci_bars() {
        let mut d = PlatformPci::new();
        d.config_write(0x10, 4, 0xffff_ffff);
        assert_eq!(d.config_read(0x10, 4), !(BAR0_SIZE - 1) | 1);
        d.config_write(0x14, 4, 0xffff_ffff);
        assert_eq!(d.config_read(0x14, 4), !(BAR1_SIZE - 1) | 8);
        d.config_write(0x14, 4, 0xf000_0000);
        assert_eq!(d.config_read(0x14, 4), 0xf000_0008);
        d.config_write(0, 4, 0);
        assert_eq!(d.config_read(0, 2), 0x5853, "ids are read-only");
    }

    #[test]
    fn log_port_collects_lines_and_unknown_ports_float() {
        let mut d = PlatformPci::new();
        for b in b"hello\n" {
            d.io_write(0x12, 1, u32::from(*b));
        }
        assert_eq!(d.log(), ["hello".to_owned()]);
        assert_eq!(d.io_read(0x11, 1), 0xff);
        assert_eq!(d.io_read(0x12, 2), 0xffff);
    }
}
