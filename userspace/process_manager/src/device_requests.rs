//! Answering the device requests of [`crate::devices`]: the `pci`
//! service's report, the device list, a driver's hand-over.
//!
//! Authority comes from what the supervisor itself handed out: a report
//! is accepted only from the live instance of the service it gave the
//! configuration-space ports to, and a hand-over only from the live
//! instance of a driver it bound to a device.

use alloc::vec::Vec;

use pandagen_abi::device::DeviceResource;
use pandagen_abi::{Cap, KernelApi, MessageEnvelope, TaskId};

use crate::descriptor::CapabilityName;
use crate::devices::{
    DeviceEntry, DriverBinding, PciDevice, CONFIG_PORTS, DEVICES_ACTION, DEVICES_ENABLED_ACTION,
    DEVICES_FOUND_ACTION,
};
use crate::protocol::{PmError, PmReply, PmResponse, DESTINATION, POLICY};
use crate::supervisor::Supervisor;

impl Supervisor {
    pub(crate) fn answer_device_request<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        request: &MessageEnvelope,
        mut handed: Option<Cap<()>>,
    ) -> PmResponse {
        let answer = self.device_answer(kernel, request, &mut handed);
        // A capability that was not accepted goes back to nobody.
        if let Some(unused) = handed {
            let _ = kernel.drop_capability(unused);
        }
        answer
    }

    fn device_answer<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        request: &MessageEnvelope,
        handed: &mut Option<Cap<()>>,
    ) -> PmResponse {
        POLICY
            .check(DESTINATION, request.schema_version)
            .map_err(PmError::SchemaMismatch)?;
        match request.action.as_str() {
            DEVICES_ACTION => {
                request
                    .payload
                    .decode::<()>()
                    .map_err(|_| PmError::MalformedPayload)?;
                Ok(PmReply::Devices(self.device_entries()))
            }
            DEVICES_FOUND_ACTION => {
                let reporter = request
                    .source
                    .and_then(|task| self.bus_service(task))
                    .ok_or(PmError::NotTheBusService)?;
                if self.devices_reported {
                    return Err(PmError::DevicesAlreadyReported);
                }
                let devices: Vec<PciDevice> = request
                    .payload
                    .decode()
                    .map_err(|_| PmError::MalformedPayload)?;
                Ok(PmReply::Bound(self.bind_drivers(reporter, devices)))
            }
            DEVICES_ENABLED_ACTION => {
                request
                    .source
                    .and_then(|task| self.bus_service(task))
                    .ok_or(PmError::NotTheBusService)?;
                let mut started = Vec::new();
                for record in &mut self.records {
                    if let Some(device) = record.device() {
                        if let Some(i) = self
                            .devices
                            .iter()
                            .position(|d| d.address == device.address)
                        {
                            started.push(i as u16);
                        }
                        record.wanted = true;
                    }
                }
                self.tick(kernel);
                Ok(PmReply::Bound(started))
            }
            _ => {
                let index = request
                    .source
                    .and_then(|task| self.live_driver(task))
                    .ok_or(PmError::NotADriver)?;
                request
                    .payload
                    .decode::<()>()
                    .map_err(|_| PmError::MalformedPayload)?;
                let served = handed.take().ok_or(PmError::NotADriver)?;
                let record = &mut self.records[index];
                if let Some(previous) = record.served.replace(served) {
                    let _ = kernel.drop_capability(previous);
                }
                let device = record.device().cloned().ok_or(PmError::NotADriver)?;
                // It may be ready now; do not wait for the next poll.
                self.tick(kernel);
                Ok(PmReply::Device(device))
            }
        }
    }

    /// The index of the service whose live instance is `task` and that
    /// holds the configuration-space ports.
    fn bus_service(&self, task: TaskId) -> Option<usize> {
        self.records.iter().position(|r| {
            r.instance.is_some_and(|i| i.task_id == task)
                && r.descriptor.capabilities.iter().any(|c| {
                    matches!(c, CapabilityName::Device(DeviceResource::Ports(p)) if p.contains(&CONFIG_PORTS))
                })
        })
    }

    /// The service at `index` will not run again. If it was the bus
    /// service and had not reported, no device will be found this boot:
    /// the waiting drivers are absent, so their dependents start without
    /// them.
    pub(crate) fn no_more_devices(&mut self, index: usize) {
        let holds_config_ports = self.records[index].descriptor.capabilities.iter().any(|c| {
            matches!(c, CapabilityName::Device(DeviceResource::Ports(p)) if p.contains(&CONFIG_PORTS))
        });
        if !holds_config_ports || self.devices_reported {
            return;
        }
        for record in &mut self.records {
            if record.binding == Some(DriverBinding::Waiting) {
                record.binding = Some(DriverBinding::Absent);
            }
        }
    }

    /// The index of the bound driver whose live instance is `task`.
    fn live_driver(&self, task: TaskId) -> Option<usize> {
        self.records
            .iter()
            .position(|r| r.device().is_some() && r.instance.is_some_and(|i| i.task_id == task))
    }

    /// Bind each waiting driver to the first untaken device it matches;
    /// the rest have no device this boot. Returns the bound devices'
    /// indices. Drivers depend on the reporter, so that they start only
    /// once it has readied their devices.
    fn bind_drivers(&mut self, reporter: usize, devices: Vec<PciDevice>) -> Vec<u16> {
        let reporter_id = self.records[reporter].descriptor.service_id;
        let mut taken: Vec<u16> = Vec::new();
        for record in &mut self.records {
            if !matches!(record.binding, Some(DriverBinding::Waiting)) {
                continue;
            }
            let Some(spec) = &record.descriptor.driver else {
                continue;
            };
            let found = devices.iter().enumerate().find(|(i, d)| {
                !taken.contains(&(*i as u16)) && spec.matches.iter().any(|m| m.matches(d))
            });
            match found {
                Some((i, device)) => {
                    taken.push(i as u16);
                    // Wanted once the bus service has enabled the device.
                    record.binding = Some(DriverBinding::Bound(device.clone()));
                    if !record.descriptor.dependencies.contains(&reporter_id) {
                        record.descriptor.dependencies.push(reporter_id);
                    }
                }
                None => record.binding = Some(DriverBinding::Absent),
            }
        }
        self.devices = devices;
        self.devices_reported = true;
        taken
    }

    fn device_entries(&self) -> Vec<DeviceEntry> {
        self.devices
            .iter()
            .map(|d| DeviceEntry {
                address: d.address,
                vendor: d.vendor,
                device: d.device,
                class: d.class,
                subclass: d.subclass,
                bars: d.bars.clone(),
                interrupt_line: d.interrupt_line,
                driver: self
                    .records
                    .iter()
                    .find(|r| r.device().is_some_and(|b| b.address == d.address))
                    .map(|r| {
                        (
                            r.descriptor.service_id,
                            r.descriptor.name.clone(),
                            r.state(),
                        )
                    }),
            })
            .collect()
    }
}
