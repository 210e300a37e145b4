//! Answering requests on the process manager's channel (see
//! [`crate::protocol`] for the interface and who may ask what).

use pandagen_abi::{Badge, ChannelId, KernelApi, MessageEnvelope, MessagePayload, ReceivedMessage};
use pandagen_abi::{ExitReason, FailureCause};

use crate::devices::{
    DEVICES_ACTION, DEVICES_ENABLED_ACTION, DEVICES_FOUND_ACTION, DRIVER_READY_ACTION,
};
use crate::events::SupervisorEvent;
use crate::lifecycle::{IllegalTransition, LifecycleState};
use crate::protocol::{
    PmError, PmReply, PmResponse, ServiceRef, CONTROL_BADGE, CONTROL_RIGHT, CRASH_ACTION,
    DESTINATION, LIST_ACTION, POLICY, RESPONSE_ACTION, RESTART_ACTION, SCHEMA, START_ACTION,
    STATUS_ACTION, STOP_ACTION,
};
use crate::supervisor::Supervisor;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Operation {
    List,
    Status,
    Start,
    Stop,
    Restart,
    Crash,
}

impl Operation {
    /// Whether it changes state, and so needs the control capability.
    fn is_control(self) -> bool {
        !matches!(self, Operation::List | Operation::Status)
    }
}

/// The authority a request's kernel stamp carries for state-changing
/// operations: `Ok` only for the control badge with the control right.
fn authorize_control(badge: Option<Badge>) -> Result<(), PmError> {
    let badge = badge.ok_or(PmError::ControlCapabilityRequired)?;
    if badge.value != CONTROL_BADGE {
        return Err(PmError::UnknownBadge(badge.value));
    }
    if !badge.rights.contains(CONTROL_RIGHT) {
        return Err(PmError::MissingRights {
            required: CONTROL_RIGHT,
            held: badge.rights,
        });
    }
    Ok(())
}

impl Supervisor {
    /// Answer one request. Its first capability is the reply channel; any
    /// others are released.
    pub(crate) fn on_request<K: KernelApi>(&mut self, kernel: &mut K, message: ReceivedMessage) {
        let mut capabilities = message.capabilities.into_iter();
        let reply = capabilities.next();
        // Only `pm.driver-ready` carries a capability past the reply
        // channel; every other is released.
        let mut handed = None;
        for extra in capabilities {
            if handed.is_none() && message.envelope.action == DRIVER_READY_ACTION {
                handed = Some(extra);
            } else {
                let _ = kernel.drop_capability(extra);
            }
        }
        let Some(reply) = reply else {
            self.log_refusal(
                kernel,
                message.envelope.source,
                SupervisorEvent::UnanswerableRequest,
            );
            if let Some(handed) = handed {
                let _ = kernel.drop_capability(handed);
            }
            return;
        };
        let request = message.envelope;
        let response = match request.action.as_str() {
            DEVICES_FOUND_ACTION
            | DEVICES_ENABLED_ACTION
            | DEVICES_ACTION
            | DRIVER_READY_ACTION => self.answer_device_request(kernel, &request, handed),
            _ => self.answer(kernel, &request, message.badge),
        };
        // A list too large for one payload is answered with the error the
        // encoder gives; manifests are far below that size.
        if let Ok(payload) = MessagePayload::new(&response) {
            let envelope = MessageEnvelope::new(DESTINATION, RESPONSE_ACTION, SCHEMA, payload)
                .with_correlation(request.id);
            // The client may have gone away: nothing to do then.
            let _ = kernel.send_message(ChannelId::from_handle(reply.handle()), envelope);
        }
        let _ = kernel.drop_capability(reply);
    }

    fn answer<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        request: &MessageEnvelope,
        badge: Option<Badge>,
    ) -> PmResponse {
        POLICY
            .check(DESTINATION, request.schema_version)
            .map_err(PmError::SchemaMismatch)?;
        let operation = match request.action.as_str() {
            LIST_ACTION => Operation::List,
            STATUS_ACTION => Operation::Status,
            START_ACTION => Operation::Start,
            STOP_ACTION => Operation::Stop,
            RESTART_ACTION => Operation::Restart,
            CRASH_ACTION => Operation::Crash,
            _ => return Err(PmError::UnknownAction),
        };
        // Authority first: an unauthorized sender learns nothing about
        // the services and changes nothing.
        if operation.is_control() {
            if let Err(refusal) = authorize_control(badge) {
                self.log_refusal(
                    kernel,
                    request.source,
                    SupervisorEvent::ControlRefused {
                        from: request.source,
                        refusal: refusal.clone(),
                    },
                );
                return Err(refusal);
            }
        }
        if operation == Operation::List {
            request
                .payload
                .decode::<()>()
                .map_err(|_| PmError::MalformedPayload)?;
            return Ok(PmReply::Services(self.services()));
        }
        // A way of naming a service this version does not know (a newer
        // client's) is refused as an unknown action, not a broken payload.
        let target: ServiceRef = request.payload.decode().map_err(|e| {
            if e.is_unknown_variant() {
                PmError::UnknownAction
            } else {
                PmError::MalformedPayload
            }
        })?;
        let index = self.find(&target).ok_or(PmError::UnknownService(target))?;
        match operation {
            Operation::List | Operation::Status => {}
            Operation::Start => self.operator_start(kernel, index)?,
            Operation::Stop => self.operator_stop(kernel, index)?,
            Operation::Restart => self.operator_restart(kernel, index)?,
            Operation::Crash => self.operator_crash(index)?,
        }
        Ok(PmReply::Service(self.records[index].info()))
    }

    fn find(&self, target: &ServiceRef) -> Option<usize> {
        match target {
            ServiceRef::Id(id) => self.index_of(*id),
            ServiceRef::Name(name) => self.records.iter().position(|r| r.descriptor.name == *name),
        }
    }

    fn refuse(&self, index: usize, to: LifecycleState) -> PmError {
        PmError::IllegalTransition(IllegalTransition {
            from: self.records[index].state(),
            to,
        })
    }

    /// Clear the restart bookkeeping an operator action starts afresh.
    fn reset_restarts(&mut self, index: usize) {
        let record = &mut self.records[index];
        record.wanted = true;
        record.gave_up = false;
        record.consecutive_restarts = 0;
    }

    /// `start`: a stopped service starts (once its dependencies run); a
    /// failed one restarts now; a pending restart happens now.
    pub fn operator_start<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        index: usize,
    ) -> Result<(), PmError> {
        let now = kernel.now();
        match self.records[index].state() {
            LifecycleState::Stopped => self.reset_restarts(index),
            LifecycleState::Failed => {
                self.reset_restarts(index);
                if !self.transition(kernel, index, LifecycleState::Restarting) {
                    return Err(self.refuse(index, LifecycleState::Restarting));
                }
                self.records[index].timer = Some(now);
            }
            LifecycleState::Restarting => {
                self.reset_restarts(index);
                self.records[index].timer = Some(now);
            }
            _ => return Err(self.refuse(index, LifecycleState::Starting)),
        }
        self.tick(kernel);
        Ok(())
    }

    /// `stop`: a live instance is asked to shut down; a pending restart is
    /// cancelled.
    pub fn operator_stop<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        index: usize,
    ) -> Result<(), PmError> {
        match self.records[index].state() {
            LifecycleState::Starting | LifecycleState::Running => {
                self.records[index].wanted = false;
                self.records[index].restart_after_stop = false;
                self.begin_stop(kernel, index);
                Ok(())
            }
            LifecycleState::Restarting => {
                self.records[index].wanted = false;
                self.records[index].timer = None;
                if self.transition(kernel, index, LifecycleState::Stopped) {
                    Ok(())
                } else {
                    Err(self.refuse(index, LifecycleState::Stopped))
                }
            }
            LifecycleState::Stopped if self.records[index].wanted => {
                // Waiting for its dependencies: just stop wanting it.
                self.records[index].wanted = false;
                Ok(())
            }
            _ => Err(self.refuse(index, LifecycleState::Stopping)),
        }
    }

    /// `crash`: end the live instance with a failure, as if it had
    /// crashed; its exit notification then drives the restart policy.
    pub fn operator_crash(&mut self, index: usize) -> Result<(), PmError> {
        let terminate = self.terminator.ok_or(PmError::CannotTerminate(None))?;
        let record = &self.records[index];
        let instance = match (record.state().has_instance(), record.instance) {
            (true, Some(instance)) => instance,
            _ => return Err(PmError::NotRunning),
        };
        let reason = ExitReason::Failure {
            error: FailureCause::Described("crashed by operator".into()),
        };
        terminate(instance.task_id, reason).map_err(|e| PmError::CannotTerminate(Some(e)))
    }

    /// `restart`: stop the live instance (if any) and start a fresh one,
    /// with a new execution id, without waiting for a restart delay.
    pub fn operator_restart<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        index: usize,
    ) -> Result<(), PmError> {
        let now = kernel.now();
        match self.records[index].state() {
            LifecycleState::Starting | LifecycleState::Running => {
                self.records[index].wanted = false;
                self.records[index].restart_after_stop = true;
                self.begin_stop(kernel, index);
            }
            LifecycleState::Stopping => self.records[index].restart_after_stop = true,
            LifecycleState::Stopped | LifecycleState::Failed => {
                self.reset_restarts(index);
                if !self.transition(kernel, index, LifecycleState::Restarting) {
                    return Err(self.refuse(index, LifecycleState::Restarting));
                }
                self.records[index].timer = Some(now);
            }
            LifecycleState::Restarting => {
                self.reset_restarts(index);
                self.records[index].timer = Some(now);
            }
        }
        self.tick(kernel);
        Ok(())
    }
}
