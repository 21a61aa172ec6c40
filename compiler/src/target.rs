//! The execution targets a pipeline can name (`target local { ... }`, `target sagemaker { ... }`),
//! and the limits of SageMaker training jobs that the checker, the estimator and the lowering
//! share.
//!
//! The target decides how the job nodes (train, merge, evaluate) are carried out: as local
//! processes running the entry scripts, or as SageMaker training jobs. Data nodes run in tunec's
//! data engine on every target. Adding a target starts here (docs/ARCHITECTURE.md, "Adding a
//! target").

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a pipeline's jobs run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Target {
    /// This machine: the entry scripts run as local processes in an emulated `/opt/ml`.
    #[serde(rename = "local")]
    Local,
    /// Amazon SageMaker: each job is a training job created from its lowered request.
    #[serde(rename = "sagemaker")]
    SageMaker,
}

impl Target {
    /// The name the language uses for it (`target sagemaker { ... }`).
    pub fn name(self) -> &'static str {
        match self {
            Target::Local => "local",
            Target::SageMaker => "sagemaker",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Limits of SageMaker training jobs (the CreateTrainingJob API reference).
pub mod sagemaker {
    /// The longest `MaxRuntimeInSeconds` and `MaxWaitTimeInSeconds`: 28 days.
    pub const MAX_RUNTIME_SECS: u64 = 28 * 24 * 3600;
    /// The smallest EBS volume tunec asks for, in GB.
    pub const MIN_VOLUME_GB: u64 = 30;
    /// The largest EBS volume SageMaker attaches, in GB.
    pub const MAX_VOLUME_GB: u64 = 16_384;
}
