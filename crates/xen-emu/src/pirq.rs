//! PIRQs of an HVM guest with `XENFEAT_hvm_pirqs` (Xen's `struct pirq`
//! with its HVM "emuirq"): a guest maps an emulated GSI or an MSI to a
//! PIRQ (`PHYSDEVOP_map_pirq`), binds the PIRQ to an event channel
//! (`EVTCHNOP_bind_pirq`), and from then on the interrupt arrives as that
//! event instead of through the IOAPIC/LAPIC.

use std::collections::BTreeMap;

use crate::types::Errno;

/// Xen's `NR_HVM_DOMU_IRQS`: GSIs an HVM domU's IOAPIC has.
pub const NR_HVM_IRQS: i32 = 48;
/// `IRQ_MSI_EMU`: the emuirq of a PIRQ mapped for MSI.
pub const EMUIRQ_MSI: i32 = -3;
/// First PIRQ `get_free_pirq` hands out for GSIs (legacy ISA IRQs stay
/// identity-mapped).
const FIRST_GSI_PIRQ: u32 = 16;

/// What a PIRQ is mapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emuirq {
    /// `PHYSDEVOP_get_free_pirq` reserved it (`PIRQ_ALLOCATED`).
    Allocated,
    /// An emulated GSI.
    Gsi(u32),
    /// MSI (`IRQ_MSI_EMU`).
    Msi,
}

#[derive(Debug, Clone, Copy)]
struct Pirq {
    emuirq: Emuirq,
    /// Bound event channel (`pirq->evtchn`), 0 if none.
    port: u32,
}

/// One domain's PIRQs (`d->pirq_tree`), `0..nr_pirqs`.
#[derive(Debug, Clone)]
pub struct PirqTable {
    nr: u32,
    pirqs: BTreeMap<u32, Pirq>,
    /// Level GSIs currently asserted by the VMM (`gsi_assert_count`).
    asserted: std::collections::BTreeSet<u32>,
}

impl PirqTable {
    /// `xen_evtchn_max_pirq` PIRQs.
    pub fn new(nr: u32) -> Self {
        Self {
            nr,
            pirqs: BTreeMap::new(),
            asserted: Default::default(),
        }
    }

    pub fn nr(&self) -> u32 {
        self.nr
    }

    fn is_free(&self, p: u32) -> bool {
        !self.pirqs.contains_key(&p)
    }

    /// `get_free_pirq`: GSIs take the lowest free PIRQ from 16 below the
    /// GSI count, anything else the highest free one above it.
    pub fn free_pirq(&self, gsi: bool) -> Result<u32, Errno> {
        let gsis = (NR_HVM_IRQS as u32).min(self.nr);
        if gsi {
            if let Some(p) = (FIRST_GSI_PIRQ..gsis).find(|p| self.is_free(*p)) {
                return Ok(p);
            }
        }
        (gsis..self.nr)
            .rev()
            .find(|p| self.is_free(*p))
            .ok_or(Errno::ENOSPC)
    }

    /// `PHYSDEVOP_get_free_pirq`: reserves the PIRQ.
    pub fn allocate(&mut self, gsi: bool) -> Result<u32, Errno> {
        let p = self.free_pirq(gsi)?;
        self.pirqs.insert(
            p,
            Pirq {
                emuirq: Emuirq::Allocated,
                port: 0,
            },
        );
        Ok(p)
    }

    /// `map_domain_emuirq_pirq`. Like Xen, mapping a PIRQ or GSI that is
    /// already mapped elsewhere is silently ignored (returns `Ok`).
    pub fn map(&mut self, pirq: i32, target: Emuirq) -> Result<(), Errno> {
        let p = u32::try_from(pirq).map_err(|_| Errno::EINVAL)?;
        if p >= self.nr {
            return Err(Errno::EINVAL);
        }
        let old = self.pirqs.get(&p).map(|x| x.emuirq);
        let clash = match old {
            None | Some(Emuirq::Allocated) => false,
            Some(e) => e != target,
        };
        let gsi_taken = match target {
            Emuirq::Gsi(g) => self.gsi_pirq(g).is_some_and(|q| q != p),
            _ => false,
        };
        if clash || gsi_taken {
            tracing::debug!("pirq {p} or its target already mapped; ignored as Xen does");
            return Ok(());
        }
        let e = self.pirqs.entry(p).or_insert(Pirq {
            emuirq: target,
            port: 0,
        });
        e.emuirq = target;
        Ok(())
    }

    /// `unmap_domain_pirq_emuirq` (the guest's `PHYSDEVOP_unmap_pirq`):
    /// `-EINVAL` unless mapped. Returns the port that was bound (the caller
    /// leaves the channel, which now fires nothing, as Xen does).
    pub fn unmap(&mut self, pirq: i32) -> Result<(), Errno> {
        let p = u32::try_from(pirq).map_err(|_| Errno::EINVAL)?;
        match self.pirqs.get_mut(&p) {
            Some(x) if matches!(x.emuirq, Emuirq::Gsi(_) | Emuirq::Msi) => {
                if x.port == 0 {
                    self.pirqs.remove(&p);
                } else {
                    x.emuirq = Emuirq::Allocated;
                }
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// What `pirq` is mapped to, if anything.
    pub fn emuirq(&self, pirq: u32) -> Option<Emuirq> {
        self.pirqs.get(&pirq).map(|p| p.emuirq)
    }

    /// The PIRQ mapped to emulated `gsi`.
    pub fn gsi_pirq(&self, gsi: u32) -> Option<u32> {
        self.pirqs
            .iter()
            .find(|(_, p)| p.emuirq == Emuirq::Gsi(gsi))
            .map(|(n, _)| *n)
    }

    /// The event channel bound to `pirq` (0 if none).
    pub fn port(&self, pirq: u32) -> u32 {
        self.pirqs.get(&pirq).map_or(0, |p| p.port)
    }

    /// `EVTCHNOP_bind_pirq` bookkeeping: `-EINVAL` past `nr_pirqs`,
    /// `-EEXIST` if bound already.
    pub fn check_bind(&self, pirq: u32) -> Result<(), Errno> {
        if pirq >= self.nr {
            return Err(Errno::EINVAL);
        }
        if self.port(pirq) != 0 {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    /// Links `pirq` to `port` (after [`Self::check_bind`]).
    pub fn bind(&mut self, pirq: u32, port: u32) {
        let e = self.pirqs.entry(pirq).or_insert(Pirq {
            emuirq: Emuirq::Allocated,
            port: 0,
        });
        e.port = port;
    }

    /// The channel on `port` closed.
    pub fn unbind(&mut self, pirq: u32) {
        if let Some(p) = self.pirqs.get_mut(&pirq) {
            p.port = 0;
        }
    }
}

impl crate::Domain {
    pub(crate) fn pirq_table(&self) -> std::sync::MutexGuard<'_, PirqTable> {
        self.pirqs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the VMM currently asserts level GSI `gsi`.
    pub(crate) fn gsi_asserted(&self, gsi: u32) -> bool {
        self.pirq_table().asserted.contains(&gsi)
    }

    /// `send_guest_pirq`: sets the PIRQ's event channel pending, if bound.
    pub(crate) fn send_pirq(&self, pirq: u32) -> bool {
        let port = self.pirq_table().port(pirq);
        if port == 0 {
            return false;
        }
        let vcpu = match self.evtchns().get(crate::types::Port(port)) {
            Ok(c) => c.vcpu,
            Err(_) => return false,
        };
        self.set_pending(crate::types::Port(port), vcpu);
        true
    }

    /// The VMM's emulated device drives GSI `gsi` to `level`. If the
    /// guest routed that GSI to a PIRQ (`PHYSDEVOP_map_pirq`) the rising
    /// edge becomes an event on the PIRQ's channel and this returns `true`:
    /// the VMM must then not also raise the GSI on its interrupt
    /// controller. `false`: deliver it the normal way.
    pub fn deliver_gsi(&self, gsi: u32, level: bool) -> bool {
        // Only the emulated GSIs can be routed to a PIRQ (map_pirq takes
        // index < NR_HVM_IRQS); not tracking the others keeps `asserted`
        // bounded whatever GSI numbers a device (or a test hook) drives.
        if gsi >= NR_HVM_IRQS as u32 {
            return false;
        }
        let (pirq, rising) = {
            let mut t = self.pirq_table();
            let rising = if level {
                t.asserted.insert(gsi)
            } else {
                t.asserted.remove(&gsi);
                false
            };
            let pirq = t.gsi_pirq(gsi);
            (pirq, rising)
        };
        match pirq {
            Some(p) => {
                if rising {
                    self.send_pirq(p);
                }
                true
            }
            None => false,
        }
    }

    /// The VMM's emulated device writes MSI `(addr, data)`. Xen's HVM
    /// PIRQ convention: vector 0 with the PIRQ in the destination-id bits
    /// (`addr[19:12]`, high bits in `addr[63:40]`) is an event on that
    /// PIRQ's channel (mapping it on first use, as `hvm_inject_msi` does);
    /// returns `true` then. Anything else is a normal MSI (`false`).
    pub fn deliver_msi(&self, addr: u64, data: u32) -> bool {
        if !self.config.has_pirq || data & 0xff != 0 {
            return false;
        }
        let dest = ((addr >> 12) & 0xff) as u32;
        let pirq = (((addr >> 32) & 0xffff_ff00) as u32) | dest;
        if pirq == 0 {
            return false;
        }
        {
            let mut t = self.pirq_table();
            if !matches!(t.emuirq(pirq), Some(Emuirq::Msi)) {
                let _ = t.map(pirq as i32, Emuirq::Msi);
            }
        }
        self.send_pirq(pirq);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::NR_HVM_IRQS;
    use crate::testing::{FakeMemory, FakePlatform};

    #[test]
    fn gsis_past_the_emulated_ones_are_not_tracked() {
        let mem = Arc::new(FakeMemory::new(1 << 20, 1));
        let plat = Arc::new(FakePlatform::new(mem.clone()));
        let cfg = crate::DomainConfig {
            has_pirq: true,
            ..crate::DomainConfig::default()
        };
        let d = crate::Domain::new(cfg, mem, plat);
        for gsi in (0..20_000u32).map(|i| 1000 + i) {
            assert!(!d.deliver_gsi(gsi, true), "GSI {gsi}: the normal way");
        }
        assert!(d.deliver_gsi(5, true) == d.pirq_table().gsi_pirq(5).is_some());
        let tracked = d.pirq_table().asserted.len();
        assert!(
            tracked <= NR_HVM_IRQS as usize,
            "{tracked} GSIs tracked as asserted"
        );
    }
}
