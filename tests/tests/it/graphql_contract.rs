//! The live schema keeps the public contract and the printed SDL in the repository
//! (api/schema.graphql) stays the live schema's. The contract is published beside the
//! repository in ../shared/design/schema.graphql; a copy lives in api/contract.graphql so
//! that a clone alone can run every test, and the copy must equal the published file
//! wherever that is present.
//!
//! Both files are parsed with async-graphql's own parser and compared as shapes (types,
//! kinds, fields, arguments, defaults, enum values, interfaces, nullability), so
//! descriptions and ordering do not matter for the contract check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{InputValueDefinition, TypeKind, TypeSystemDefinition};

fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[derive(Debug, Clone, PartialEq)]
struct Arg {
    ty: String,
    default: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    ty: String,
    args: BTreeMap<String, Arg>,
}

#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Scalar,
    Object {
        implements: BTreeSet<String>,
        fields: BTreeMap<String, Field>,
    },
    Interface {
        implements: BTreeSet<String>,
        fields: BTreeMap<String, Field>,
    },
    Union(BTreeSet<String>),
    Enum(BTreeSet<String>),
    Input(BTreeMap<String, Arg>),
}

impl Shape {
    fn kind(&self) -> &'static str {
        match self {
            Shape::Scalar => "scalar",
            Shape::Object { .. } => "type",
            Shape::Interface { .. } => "interface",
            Shape::Union(_) => "union",
            Shape::Enum(_) => "enum",
            Shape::Input(_) => "input",
        }
    }
}

#[derive(Debug)]
struct Schema {
    roots: [Option<String>; 3],
    types: BTreeMap<String, Shape>,
}

fn args(values: &[async_graphql::Positioned<InputValueDefinition>]) -> BTreeMap<String, Arg> {
    values
        .iter()
        .map(|v| {
            let v = &v.node;
            (
                v.name.node.to_string(),
                Arg {
                    ty: v.ty.node.to_string(),
                    default: v.default_value.as_ref().map(|d| d.node.to_string()),
                },
            )
        })
        .collect()
}

fn shape_of(sdl: &str, what: &str) -> Schema {
    let doc = parse_schema(sdl).unwrap_or_else(|e| panic!("{what} does not parse: {e}"));
    let mut types = BTreeMap::new();
    let mut roots = [None, None, None];
    for definition in doc.definitions {
        match definition {
            TypeSystemDefinition::Schema(schema) => {
                let s = schema.node;
                roots = [s.query, s.mutation, s.subscription].map(|r| r.map(|n| n.node.to_string()));
            }
            TypeSystemDefinition::Type(ty) => {
                let ty = ty.node;
                let fields = |fields: &[async_graphql::Positioned<async_graphql::parser::types::FieldDefinition>]| {
                    fields
                        .iter()
                        .map(|f| {
                            (
                                f.node.name.node.to_string(),
                                Field {
                                    ty: f.node.ty.node.to_string(),
                                    args: args(&f.node.arguments),
                                },
                            )
                        })
                        .collect::<BTreeMap<_, _>>()
                };
                let names =
                    |names: &[async_graphql::Positioned<async_graphql::Name>]| names.iter().map(|n| n.node.to_string()).collect::<BTreeSet<_>>();
                let shape = match &ty.kind {
                    TypeKind::Scalar => Shape::Scalar,
                    TypeKind::Object(o) => Shape::Object {
                        implements: names(&o.implements),
                        fields: fields(&o.fields),
                    },
                    TypeKind::Interface(i) => Shape::Interface {
                        implements: names(&i.implements),
                        fields: fields(&i.fields),
                    },
                    TypeKind::Union(u) => Shape::Union(names(&u.members)),
                    TypeKind::Enum(e) => Shape::Enum(e.values.iter().map(|v| v.node.value.node.to_string()).collect()),
                    TypeKind::InputObject(i) => Shape::Input(args(&i.fields)),
                };
                types.insert(ty.name.node.to_string(), shape);
            }
            TypeSystemDefinition::Directive(_) => {}
        }
    }
    // Without a schema block the roots are the types named Query, Mutation, Subscription.
    for (root, name) in roots.iter_mut().zip(["Query", "Mutation", "Subscription"]) {
        if root.is_none() && types.contains_key(name) {
            *root = Some(name.to_owned());
        }
    }
    Schema { roots, types }
}

/// Everything `contract` promises that `live` does not keep.
fn gaps(contract: &Schema, live: &Schema) -> Vec<String> {
    let mut gaps = Vec::new();
    for (i, root) in ["query", "mutation", "subscription"].iter().enumerate() {
        if contract.roots[i] != live.roots[i] {
            gaps.push(format!("{root} root: contract {:?}, live {:?}", contract.roots[i], live.roots[i]));
        }
    }
    let compare_args = |gaps: &mut Vec<String>, place: &str, promised: &BTreeMap<String, Arg>, served: &BTreeMap<String, Arg>| {
        for (name, arg) in promised {
            match served.get(name) {
                None => gaps.push(format!("{place}: argument or input field `{name}` missing")),
                Some(got) if got != arg => gaps.push(format!("{place}.{name}: contract {arg:?}, live {got:?}")),
                Some(_) => {}
            }
        }
        for (name, arg) in served {
            // An addition is fine only if old clients can leave it out.
            if !promised.contains_key(name) && arg.ty.ends_with('!') && arg.default.is_none() {
                gaps.push(format!("{place}: live adds required `{name}: {}`", arg.ty));
            }
        }
    };
    for (name, promised) in &contract.types {
        let Some(served) = live.types.get(name) else {
            gaps.push(format!("{} {name} missing", promised.kind()));
            continue;
        };
        if promised.kind() != served.kind() {
            gaps.push(format!("{name}: contract has a {}, live a {}", promised.kind(), served.kind()));
            continue;
        }
        match (promised, served) {
            (Shape::Object { implements: pi, fields: pf }, Shape::Object { implements: si, fields: sf })
            | (Shape::Interface { implements: pi, fields: pf }, Shape::Interface { implements: si, fields: sf }) => {
                for missing in pi.difference(si) {
                    gaps.push(format!("{name} does not implement {missing}"));
                }
                for (field, pfield) in pf {
                    match sf.get(field) {
                        None => gaps.push(format!("{name}.{field} missing")),
                        Some(sfield) => {
                            if sfield.ty != pfield.ty {
                                gaps.push(format!("{name}.{field}: contract type {}, live {}", pfield.ty, sfield.ty));
                            }
                            compare_args(&mut gaps, &format!("{name}.{field}"), &pfield.args, &sfield.args);
                        }
                    }
                }
            }
            (Shape::Union(p), Shape::Union(s)) => {
                for missing in p.difference(s) {
                    gaps.push(format!("union {name} lacks {missing}"));
                }
            }
            (Shape::Enum(p), Shape::Enum(s)) => {
                for missing in p.difference(s) {
                    gaps.push(format!("enum {name} lacks {missing}"));
                }
            }
            (Shape::Input(p), Shape::Input(s)) => compare_args(&mut gaps, name, p, s),
            _ => {}
        }
    }
    gaps
}

fn contract_sdl() -> String {
    read(&repo_file("api/contract.graphql"))
}

#[test]
fn the_kept_contract_is_the_published_one() {
    let published = repo_file("../shared/design/schema.graphql");
    // CI lays shared/ beside the clone; a missing file must fail, not pass unchecked.
    assert!(
        published.exists(),
        "{} is missing: this test compares api/contract.graphql with the published contract, \
         so put the shared/ folder beside this clone (CI does)",
        published.display()
    );
    assert!(
        read(&published) == contract_sdl(),
        "api/contract.graphql differs from {}: copy the published contract over it",
        published.display()
    );
}

#[test]
fn the_live_schema_keeps_every_promise_of_the_contract() {
    let contract = shape_of(&contract_sdl(), "the contract");
    let live = shape_of(&api::schema::sdl(), "the live schema");
    let gaps = gaps(&contract, &live);
    assert!(gaps.is_empty(), "the live schema breaks the contract:\n  {}", gaps.join("\n  "));
}

#[test]
fn the_repository_keeps_the_live_sdl() {
    let path = repo_file("api/schema.graphql");
    let live = api::schema::sdl();
    if std::env::var_os("CARTSOURCE_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &live).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    let kept = read(&path);
    assert!(
        kept == live,
        "api/schema.graphql differs from the live schema: run `cargo run -p api -- schema > api/schema.graphql` \
         (or this test with CARTSOURCE_UPDATE_SCHEMA=1) and review the diff"
    );
    let gaps = gaps(&shape_of(&contract_sdl(), "the contract"), &shape_of(&kept, "api/schema.graphql"));
    assert!(gaps.is_empty(), "api/schema.graphql breaks the contract:\n  {}", gaps.join("\n  "));
}

/// The comparison itself catches drift: a changed nullability, a dropped enum value, a
/// renamed argument, a new required input field.
#[test]
fn the_comparison_notices_drift() {
    let contract = shape_of(&contract_sdl(), "the contract");
    let live_sdl = api::schema::sdl();
    let drifts = [
        (
            "  sku: String!\n  name: String!\n  price: Money!",
            "  sku: String\n  name: String!\n  price: Money!",
        ),
        ("CHECKED_OUT", "CHECKEDOUT"),
        ("cart(id: UUID!, minPosition: Position): Cart", "cart(id: UUID!, min: Position): Cart"),
        (
            "input ClearCartInput {\n  cartId: UUID!",
            "input ClearCartInput {\n  cartId: UUID!\n  reason: String!",
        ),
        ("history(first: Int = 50, after: String)", "history(first: Int = 20, after: String)"),
    ];
    for (from, to) in drifts {
        assert!(
            contract_sdl().contains(from),
            "the drift fixture {from:?} is not in the contract any more"
        );
        // Apply the drift to the contract side: the live schema no longer matches it.
        let drifted = shape_of(&contract_sdl().replace(from, to), "drifted contract");
        let mut all = gaps(&drifted, &shape_of(&live_sdl, "live"));
        all.extend(gaps(&contract, &shape_of(&contract_sdl().replace(from, to), "drifted live")));
        assert!(!all.is_empty(), "drift {from:?} -> {to:?} went unnoticed");
    }
}
