//! Enum dispatch for the closed sets of architectures (inference and training SAEs): an enum of
//! the architecture structs that derefs to their shared trait. The `match` runs in the caller's
//! code, so no trait object (whose vtable would point into whichever copy of the crate made it)
//! outlives a call; across evcxr cells that keeps every call in the calling cell's copy of
//! candle (see `crate::tensor_ids`).

/// `enum_dispatch!(doc; pub(crate) enum Name: dyn Trait { Variant(Type), ... })`: the enum,
/// `Deref` and `DerefMut` to `dyn Trait`.
macro_rules! enum_dispatch {
    ($(#[$meta:meta])* $vis:vis enum $name:ident: $target:ty {
        $($(#[$vmeta:meta])* $var:ident($ty:ty)),* $(,)?
    }) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$vmeta])* $var($ty)),*
        }
        impl std::ops::Deref for $name {
            type Target = $target;
            fn deref(&self) -> &Self::Target {
                match self {
                    $($name::$var(a) => a),*
                }
            }
        }
        impl std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut Self::Target {
                match self {
                    $($name::$var(a) => a),*
                }
            }
        }
    };
}
pub(crate) use enum_dispatch;
