//! Analyses built on the hooked model and SAEs: steering generation with SAE latents and
//! patch scoping (ARENA's SAE exercises, §1.6 and §1.9), and feature dashboards (sae_vis, §1.3).
pub mod dashboard;
pub mod patch_scoping;
pub mod steering;

pub use dashboard::{
    feature_dashboards, feature_dashboards_with_progress, prompt_centric, DashboardConfig,
    DashboardInput, Dashboards, FeatureDashboard, LatentSelection, PromptView,
};
pub use patch_scoping::{
    generate_patch_scoping_explanation, patch_scoping_vector, PatchScopingOptions,
};
pub use steering::{
    add_steering_hook, compare_steering, generate_with_steering, steering_vector,
    SteeringComparison,
};
