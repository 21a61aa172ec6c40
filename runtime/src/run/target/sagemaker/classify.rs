//! Why a SageMaker training job (or a call to the API) failed, as a class the executor acts on:
//! retry with backoff, or stop and say what to change.
//!
//! SageMaker reports a failed job as a status (`Failed`, `Stopped`), a secondary status
//! (`MaxRuntimeExceeded`, `MaxWaitTimeExceeded`, `Interrupted`, ...) and a free-text
//! `FailureReason`, whose first words name the kind (`CapacityError:`, `AlgorithmError:`,
//! `ClientError:`, `InternalServerError:`); a script's own failure file is copied into it. An API
//! call fails with an error code (`ThrottlingException`, `ResourceLimitExceeded`,
//! `AccessDeniedException`, ...). [`classify_job`] and [`classify_api`] map both onto
//! [`FailureClass`]; the tables are in docs/cli.md (the SageMaker target). Pure: no IO.

/// What went wrong, as far as deciding what to do next goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// No capacity for the instance type now (`CapacityError`, `InsufficientInstanceCapacity`).
    Capacity,
    /// The API refused the rate of calls.
    Throttling,
    /// The GPU or the host ran out of memory.
    OutOfMemory,
    /// A managed-spot job was reclaimed and could not resume within `max_wait`.
    SpotInterruption,
    /// The role or the caller lacks a permission.
    Permissions,
    /// An account quota (instances, jobs) is exhausted.
    Quota,
    /// The job ran longer than `max_runtime`.
    MaxRuntime,
    /// The entry script failed (a bad input, a bug).
    Script,
    /// SageMaker's own fault.
    Internal,
    /// Stopped on request.
    Stopped,
    /// Anything else.
    Other,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Capacity => "capacity",
            FailureClass::Throttling => "throttling",
            FailureClass::OutOfMemory => "out of memory",
            FailureClass::SpotInterruption => "spot interruption",
            FailureClass::Permissions => "permissions",
            FailureClass::Quota => "quota",
            FailureClass::MaxRuntime => "max runtime",
            FailureClass::Script => "script error",
            FailureClass::Internal => "SageMaker internal error",
            FailureClass::Stopped => "stopped",
            FailureClass::Other => "failure",
        }
    }

    /// How many attempts a run makes in all for a job that fails this way (1: no retry).
    pub fn attempts(self) -> u32 {
        match self {
            FailureClass::Capacity | FailureClass::SpotInterruption => 4,
            FailureClass::Throttling | FailureClass::Internal => 3,
            _ => 1,
        }
    }

    /// What to do about it, for the message that ends a run.
    pub fn advice(self) -> &'static str {
        match self {
            FailureClass::Capacity => {
                "no capacity for this instance type right now: run again later, or choose another instance type \
                 or region in `compute`"
            }
            FailureClass::Throttling => "the SageMaker API is throttling calls: run again in a few minutes",
            FailureClass::OutOfMemory => {
                "halve `per_device_batch` (and double `grad_accum` to keep the effective batch), enable \
                 `gradient_checkpointing`, or choose an instance with more GPU memory; `tunec check` shows the estimate"
            }
            FailureClass::SpotInterruption => {
                "spot capacity was reclaimed for longer than `max_wait`: raise `max_wait`, or set `spot = false`; the \
                 checkpoints are kept, so a rerun resumes"
            }
            FailureClass::Permissions => {
                "the execution role or the caller lacks a permission: `tunec iam-policy FILE` prints the policies \
                 this pipeline needs"
            }
            FailureClass::Quota => {
                "an account quota is exhausted: request an increase in the Service Quotas console (SageMaker, \
                 training job usage for this instance type), or use fewer or other instances"
            }
            FailureClass::MaxRuntime => {
                "the job hit `max_runtime`: raise it; the checkpoints are kept, so a rerun resumes"
            }
            FailureClass::Script => "the entry script failed: its reason is above; the job's log is in CloudWatch",
            FailureClass::Internal => "SageMaker failed internally: run again",
            FailureClass::Stopped => "the job was stopped; run again to start it anew",
            FailureClass::Other => "see the reason above",
        }
    }
}

fn has(text: &str, needles: &[&str]) -> bool {
    let lower = text.to_ascii_lowercase();
    needles.iter().any(|n| lower.contains(&n.to_ascii_lowercase()))
}

/// The class of a job that ended with `status` (`Failed` or `Stopped`), `secondary` status and
/// `reason` (its FailureReason, possibly empty).
pub fn classify_job(status: &str, secondary: &str, reason: &str) -> FailureClass {
    if secondary == "MaxWaitTimeExceeded" || secondary == "Interrupted" || has(reason, &["spot interruption"]) {
        return FailureClass::SpotInterruption;
    }
    if secondary == "MaxRuntimeExceeded" {
        return FailureClass::MaxRuntime;
    }
    if has(reason, &["CapacityError", "InsufficientInstanceCapacity", "insufficient capacity"]) {
        return FailureClass::Capacity;
    }
    if has(
        reason,
        &["out of memory", "OutOfMemoryError", "CUDA error: out of memory", "exit code 137", "exit status 137"],
    ) {
        return FailureClass::OutOfMemory;
    }
    if has(reason, &["AccessDenied", "not authorized", "Forbidden", "403"]) {
        return FailureClass::Permissions;
    }
    if has(reason, &["ResourceLimitExceeded"]) {
        return FailureClass::Quota;
    }
    if has(reason, &["InternalServerError", "InternalFailure", "internal error"]) {
        return FailureClass::Internal;
    }
    if has(reason, &["AlgorithmError", "ExecuteUserScriptError", "ClientError"]) {
        return FailureClass::Script;
    }
    if status == "Stopped" {
        return FailureClass::Stopped;
    }
    FailureClass::Other
}

/// The class of an API error with error `code` and `message`.
pub fn classify_api(code: &str, message: &str) -> FailureClass {
    match code {
        "ThrottlingException" | "Throttling" | "TooManyRequestsException" | "RequestLimitExceeded" | "SlowDown" => {
            FailureClass::Throttling
        }
        "ResourceLimitExceeded" => FailureClass::Quota,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "ExpiredToken" => FailureClass::Permissions,
        "InternalFailure" | "InternalServerError" | "ServiceUnavailable" | "InternalError" => FailureClass::Internal,
        "CapacityError" | "InsufficientInstanceCapacity" => FailureClass::Capacity,
        _ if has(message, &["rate exceeded"]) => FailureClass::Throttling,
        _ => FailureClass::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_failures_are_classified_from_status_secondary_status_and_reason() {
        let cases = [
            ("Failed", "Failed", "CapacityError: Unable to provision requested ML compute capacity. Please retry using a different ML instance type.", FailureClass::Capacity),
            ("Failed", "Failed", "AlgorithmError: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", FailureClass::OutOfMemory),
            ("Failed", "Failed", "AlgorithmError: ExecuteUserScriptError: Command \"bash launch.sh\" exit status 137", FailureClass::OutOfMemory),
            ("Failed", "Failed", "AlgorithmError: input channel `train` is missing (SM_CHANNEL_TRAIN)", FailureClass::Script),
            ("Failed", "Failed", "ClientError: Data download failed: AccessDenied (403) on s3://b/p/data", FailureClass::Permissions),
            ("Failed", "Failed", "InternalServerError: We encountered an internal error. Please try again.", FailureClass::Internal),
            ("Stopped", "MaxWaitTimeExceeded", "", FailureClass::SpotInterruption),
            ("Stopped", "MaxRuntimeExceeded", "", FailureClass::MaxRuntime),
            ("Stopped", "Stopped", "", FailureClass::Stopped),
            ("Failed", "Failed", "something new", FailureClass::Other),
        ];
        for (status, secondary, reason, class) in cases {
            assert_eq!(classify_job(status, secondary, reason), class, "{status} {secondary} {reason}");
        }
    }

    #[test]
    fn only_transient_classes_are_retried() {
        for class in
            [FailureClass::Capacity, FailureClass::SpotInterruption, FailureClass::Throttling, FailureClass::Internal]
        {
            assert!(class.attempts() > 1, "{class:?}");
        }
        for class in [
            FailureClass::OutOfMemory,
            FailureClass::Script,
            FailureClass::Permissions,
            FailureClass::Quota,
            FailureClass::MaxRuntime,
            FailureClass::Stopped,
            FailureClass::Other,
        ] {
            assert_eq!(class.attempts(), 1, "{class:?}");
        }
    }

    #[test]
    fn api_errors_are_classified_by_code() {
        assert_eq!(classify_api("ThrottlingException", "Rate exceeded."), FailureClass::Throttling);
        assert_eq!(classify_api("ValidationException", "Rate exceeded"), FailureClass::Throttling);
        assert_eq!(classify_api("ResourceLimitExceeded", "quota"), FailureClass::Quota);
        assert_eq!(classify_api("AccessDeniedException", "no"), FailureClass::Permissions);
        assert_eq!(classify_api("ValidationException", "Requested resource not found."), FailureClass::Other);
    }
}
