//! The host's view of each shader against the shader itself, through naga's reflection of the
//! source the device compiles (host constants and `common.wgsl` prepended): every WGSL struct
//! against its `#[repr(C)]` Rust twin (size, and each field's offset and scalar type), and every
//! entry point's bindings against its [`Kernel`] struct (names and binding numbers, in order).
//! No GPU is needed: these run wherever the crate builds.

use super::gram::{self, ColumnSums, Gram, GramFold, GramParams};
use super::knn::{self, KnnCandidates, KnnParams};
use super::moments::{self, MomentParams, MomentsFold, MomentsScatter};
use super::normalize::{self, NormalizeLog1p, NormalizeParams};
use super::project::{self, Project, ProjectParams};
use super::scale::{self, DensifyScale, ScaleParams};
use super::umap::{self, UmapEdge, UmapHeads, UmapParams, UmapTails, UmapTick};
use super::{Kernel, Shader};

/// Every shader the device compiles.
const SHADERS: [&Shader; 7] = [
    &normalize::SHADER,
    &moments::SHADER,
    &scale::SHADER,
    &gram::SHADER,
    &project::SHADER,
    &knn::SHADER,
    &umap::SHADER,
];

/// `shader`'s generated source, parsed and validated by naga (as wgpu does before compiling).
fn module(shader: &Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    let source = shader.source();
    let module = naga::front::wgsl::parse_str(&source)
        .unwrap_or_else(|e| panic!("{}: {}", shader.file, e.emit_to_string(&source)));
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{}: {}", shader.file, e.emit_to_string(&source)));
    (module, info)
}

/// A Rust struct's size and its fields' offsets and types, as the compiler lays them out.
struct RustLayout {
    name: &'static str,
    size: usize,
    /// (name, offset, type name) of each field.
    fields: Vec<(&'static str, usize, &'static str)>,
}

fn type_name_of<T>(_: &T) -> &'static str {
    std::any::type_name::<T>()
}

/// The [`RustLayout`] of `Type { field, ... }`; every field must be listed (the destructuring
/// pattern does not compile otherwise), in any order.
macro_rules! layout {
    ($ty:ident { $($field:ident),* $(,)? }) => {{
        let v: $ty = bytemuck::Zeroable::zeroed();
        let $ty { $($field: _),* } = v;
        RustLayout {
            name: stringify!($ty),
            size: std::mem::size_of::<$ty>(),
            fields: vec![$((
                stringify!($field),
                std::mem::offset_of!($ty, $field),
                type_name_of(&v.$field),
            )),*],
        }
    }};
}

/// The Rust name of a WGSL member type, where it is a scalar.
fn scalar_name(module: &naga::Module, ty: naga::Handle<naga::Type>) -> String {
    match module.types[ty].inner {
        naga::TypeInner::Scalar(naga::Scalar { kind, width }) => {
            let k = match kind {
                naga::ScalarKind::Uint => "u",
                naga::ScalarKind::Sint => "i",
                naga::ScalarKind::Float => "f",
                _ => "?",
            };
            format!("{k}{}", 8 * width)
        }
        ref other => format!("{other:?}"),
    }
}

/// Every difference between WGSL struct `wgsl` of `module` and `rust`, one line each, naming
/// the struct and the field.
fn layout_differences(module: &naga::Module, wgsl: &str, rust: &RustLayout) -> Vec<String> {
    let Some((members, span)) = module.types.iter().find_map(|(_, t)| match &t.inner {
        naga::TypeInner::Struct { members, span } if t.name.as_deref() == Some(wgsl) => {
            Some((members, *span))
        }
        _ => None,
    }) else {
        return vec![format!("no WGSL struct {wgsl} for {}", rust.name)];
    };
    let r = rust.name;
    let mut out = Vec::new();
    if span as usize != rust.size {
        out.push(format!("{r} is {} bytes, WGSL {wgsl} {span}", rust.size));
    }
    for m in members {
        let name = m.name.as_deref().unwrap_or("?");
        let w = scalar_name(module, m.ty);
        match rust.fields.iter().find(|f| f.0 == name) {
            None => out.push(format!(
                "{r} has no field {name} (WGSL {wgsl}.{name}: {w} at offset {})",
                m.offset
            )),
            Some(&(_, offset, ty)) => {
                if offset != m.offset as usize {
                    out.push(format!(
                        "{r}.{name} is at offset {offset}, WGSL {wgsl}.{name} at {}",
                        m.offset
                    ));
                }
                if ty != w {
                    out.push(format!("{r}.{name} is {ty}, WGSL {wgsl}.{name} {w}"));
                }
            }
        }
    }
    for f in &rust.fields {
        if !members.iter().any(|m| m.name.as_deref() == Some(f.0)) {
            out.push(format!("{r}.{} has no WGSL {wgsl}.{} twin", f.0, f.0));
        }
    }
    out
}

#[test]
fn parameter_structs_match_their_wgsl_twins() {
    let cases = [
        (
            &normalize::SHADER,
            "Params",
            layout!(NormalizeParams {
                n_rows,
                target_sum,
                one,
                _pad0
            }),
        ),
        (
            &moments::SHADER,
            "Params",
            layout!(MomentParams {
                entry_begin,
                entry_end,
                per_group,
                groups_per_lane,
                n_cols,
                n_lanes,
                transform,
                one,
            }),
        ),
        (
            &scale::SHADER,
            "Params",
            layout!(ScaleParams {
                n_rows,
                k_pad,
                k,
                rows_pad,
                max_value,
                _pad0,
                _pad1,
                _pad2,
            }),
        ),
        (
            &gram::SHADER,
            "Params",
            layout!(GramParams {
                k_pad,
                rows,
                rows_per_split,
                n_splits,
                one,
                _pad0,
                _pad1,
                _pad2,
            }),
        ),
        (
            &project::SHADER,
            "Params",
            layout!(ProjectParams {
                rows,
                k_pad,
                c_pad,
                _pad0
            }),
        ),
        (
            &knn::SHADER,
            "Params",
            layout!(KnnParams {
                n_q,
                n_c,
                dim,
                list_len,
                c_offset,
                first,
                last,
                _pad0,
            }),
        ),
        (
            &umap::SHADER,
            "Params",
            layout!(UmapParams {
                n,
                dim,
                seed,
                n_epochs,
                a,
                b,
                gamma,
                negative_rate,
                learning_rate,
                first_point,
                n_points,
                first_edge,
            }),
        ),
        (
            &umap::SHADER,
            "Edge",
            layout!(UmapEdge { tail, rate, slot }),
        ),
    ];
    let mut problems = Vec::new();
    for shader in SHADERS {
        let (m, _) = module(shader);
        for (_, t) in m.types.iter() {
            // naga's own result types (of atomicCompareExchangeWeak, ...) start with "__".
            if let (naga::TypeInner::Struct { .. }, Some(name)) = (&t.inner, &t.name)
                && !name.starts_with("__")
                && !cases
                    .iter()
                    .any(|(s, w, _)| s.file == shader.file && w == name)
            {
                problems.push(format!("{}: struct {name} has no Rust twin", shader.file));
            }
        }
    }
    for (shader, wgsl, rust) in &cases {
        let (m, _) = module(shader);
        for p in layout_differences(&m, wgsl, rust) {
            problems.push(format!("{}: {p}", shader.file));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn a_moved_or_missing_field_is_reported_by_struct_and_field() {
    // NormalizeParams with two fields swapped, and with its padding dropped.
    #[repr(C)]
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct Swapped {
        target_sum: f32,
        n_rows: u32,
        one: f32,
        _pad0: u32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct Unpadded {
        n_rows: u32,
        target_sum: f32,
        one: f32,
    }
    let (m, _) = module(&normalize::SHADER);
    let swapped = layout_differences(
        &m,
        "Params",
        &layout!(Swapped {
            target_sum,
            n_rows,
            one,
            _pad0
        }),
    );
    assert_eq!(
        swapped,
        [
            "Swapped.n_rows is at offset 4, WGSL Params.n_rows at 0",
            "Swapped.target_sum is at offset 0, WGSL Params.target_sum at 4",
        ]
    );
    let unpadded = layout_differences(
        &m,
        "Params",
        &layout!(Unpadded {
            n_rows,
            target_sum,
            one
        }),
    );
    assert_eq!(
        unpadded,
        [
            "Unpadded is 12 bytes, WGSL Params 16",
            "Unpadded has no field _pad0 (WGSL Params._pad0: u32 at offset 12)",
        ]
    );
}

/// An entry point's `(variable, binding)` pairs as the host declares them.
struct HostBindings {
    entry: &'static str,
    shader: &'static Shader,
    slots: &'static [(&'static str, u32)],
}

fn host<'a, K: Kernel<'a>>() -> HostBindings {
    HostBindings {
        entry: K::ENTRY,
        shader: K::SHADER,
        slots: K::SLOTS,
    }
}

/// The `(variable, binding)` pairs of group 0 that `entry` of `module` uses, by binding.
fn used_bindings(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
) -> Option<Vec<(String, u32)>> {
    let i = module.entry_points.iter().position(|e| e.name == entry)?;
    let uses = info.get_entry_point(i);
    let mut out: Vec<(String, u32)> = module
        .global_variables
        .iter()
        .filter(|(h, _)| !uses[*h].is_empty())
        .filter_map(|(_, v)| {
            let b = v.binding.as_ref()?;
            assert_eq!(b.group, 0, "{entry}: {:?} outside group 0", v.name);
            Some((v.name.clone().unwrap_or_default(), b.binding))
        })
        .collect();
    out.sort_by_key(|b| b.1);
    Some(out)
}

#[test]
fn kernel_bindings_match_the_entry_points() {
    let kernels = [
        host::<NormalizeLog1p>(),
        host::<MomentsScatter>(),
        host::<MomentsFold>(),
        host::<DensifyScale>(),
        host::<Gram>(),
        host::<GramFold>(),
        host::<ColumnSums>(),
        host::<Project>(),
        host::<KnnCandidates>(),
        host::<UmapHeads>(),
        host::<UmapTails>(),
        host::<UmapTick>(),
    ];
    let mut problems = Vec::new();
    for shader in SHADERS {
        let (m, info) = module(shader);
        // Every entry point has its bindings struct.
        for e in &m.entry_points {
            if !kernels
                .iter()
                .any(|k| k.shader.file == shader.file && k.entry == e.name)
            {
                problems.push(format!(
                    "{}: {} has no bindings struct",
                    shader.file, e.name
                ));
            }
        }
        for k in kernels.iter().filter(|k| k.shader.file == shader.file) {
            let Some(used) = used_bindings(&m, &info, k.entry) else {
                problems.push(format!("{}: no entry point {}", shader.file, k.entry));
                continue;
            };
            let declared: Vec<(String, u32)> =
                k.slots.iter().map(|&(n, b)| (n.to_string(), b)).collect();
            if declared != used {
                problems.push(format!(
                    "{}: {} binds {declared:?}, the shader uses {used:?}",
                    shader.file, k.entry
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
