//! The execution targets: where the job nodes (train, merge, evaluate) run. `local` runs the entry
//! scripts as processes on this machine, `sagemaker` as SageMaker training jobs.

pub mod local;
pub mod sagemaker;
