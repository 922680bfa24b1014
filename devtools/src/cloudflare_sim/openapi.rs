//! Request validation against Cloudflare's own published OpenAPI document
//! (`devtools/openapi/cloudflare-openapi.json.gz`, 2024-08-06, OpenAPI 3.0.3).
//!
//! The simulator and the client were written by the same team, so they agree with each
//! other; this module is the independent judge. [`OpenApi::validate`] finds the
//! operation for a request (method + path under `/client/v4`) and checks its path
//! parameters, query parameters and JSON body against the document, plus the cited
//! additions in `openapi_overlay.rs`.
//!
//! How the OpenAPI 3.0 schemas are turned into JSON Schema (draft 2020-12, checked by the
//! `jsonschema` crate):
//! - `$ref: #/components/schemas/X` becomes `#/$defs/X`; each operation's validator
//!   carries the components it reaches. Siblings of `$ref` are dropped (3.0 ignores them).
//! - `nullable: true` adds `null` to `type` (and to `enum`); without a `type` the schema
//!   becomes `anyOf [null, schema]`.
//! - `allOf` / `oneOf` / `anyOf` are kept as they are; `discriminator` is dropped (it only
//!   names the property the alternatives already constrain).
//! - `readOnly` properties are removed from `required` (OpenAPI 3.0: required only in
//!   responses), so a request need not send DNS `id`, `proxiable`, `created_on`...
//! - `format`: `date-time`, `date`, `uuid`, `email`, `ipv4`, `ipv6` and `uri` are asserted
//!   (a DNS A record's `content` must be an IPv4 address, a tunnel id a UUID). `hostname`
//!   is not (Cloudflare names take wildcards and `_` labels that RFC 1123 refuses), nor
//!   are `uri-reference`, `uri-template`, `password`, `binary` and the numeric type hints
//!   (`int32`, `int64`, `float`).
//! - Undeclared body properties are rejected: every place in the body where an object
//!   starts gets `unevaluatedProperties: false` when its schema declares properties and no
//!   `additionalProperties`. OpenAPI alone would let them through; rejecting them catches
//!   a misspelt field. (`additionalProperties: false` could not do this through `allOf`.)
//! - Query parameters arrive as strings and are read as the parameter's type first
//!   (`number`, `integer`, `boolean`; repeated keys for arrays), so `per_page=5000` is
//!   judged as the number 5000. A query parameter the operation does not declare is
//!   rejected unless the overlay lists it, so a misspelt filter is caught.
//! - Header and cookie parameters and `security` are ignored: the simulator checks the
//!   bearer token itself, and the 2024 document lists only `api_email`/`api_key` for DNS.
//! - A request body the document marks `required` may be left out of a `DELETE`: the
//!   document marks 115 DELETE bodies required, and the current SDK sends none
//!   (cloudflare-go v6.6.0 `dns/record.go` `RecordService.Delete` and
//!   `zero_trust/tunnelcloudflared.go` `TunnelCloudflaredService.Delete` pass a nil body).
//!   A body that is sent is validated.
//!
//! The document is loaded once per process; validators are compiled per operation on
//! first use and cached.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::{Draft, ValidationError, Validator};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::input::{percent_decode_path, Params};
use super::openapi_overlay::{Patch, ADDITIONS, COMPONENT_PATCHES};

/// The vendored document, gzip-compressed.
const DOC_GZ: &[u8] = include_bytes!("../../openapi/cloudflare-openapi.json.gz");

/// SHA-256 of the uncompressed document; loading fails on any other content.
pub const DOC_SHA256: &str = "da05a4d1416c7e7e3b4bfbf51dcf6446f7158c670493961ec65261a682d92427";

/// Where the API lives on the simulator; paths in the document are relative to it.
pub const API_PREFIX: &str = "/client/v4";

/// `format` values that are asserted; every other one is dropped (see the module docs).
const ASSERTED_FORMATS: &[&str] = &["date-time", "date", "uuid", "email", "ipv4", "ipv6", "uri"];

/// OpenAPI 3.0 keywords that JSON Schema does not need.
const DROPPED_KEYWORDS: &[&str] = &[
    "nullable",
    "discriminator",
    "example",
    "examples",
    "xml",
    "externalDocs",
    "description",
    "deprecated",
];

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// Which part of a request broke the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// No operation in the document has this method and path.
    Operation,
    /// A path parameter.
    Path,
    /// A query parameter.
    Query,
    /// The request body (or its media type).
    Body,
}

/// One request the OpenAPI document rejects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaViolation {
    /// HTTP method.
    pub method: String,
    /// Request path (with `/client/v4`).
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// The document's `operationId`, when an operation was found.
    pub operation_id: Option<String>,
    /// Which part of the request.
    pub part: Part,
    /// The offending field: a parameter name, or a body location such as
    /// `config.ingress[1].hostname`; empty for the body as a whole.
    pub field: String,
    /// The schema rule that failed: a JSON Schema keyword (`required`, `maximum`,
    /// `enum`, `type`, `unevaluatedProperties`, ...) or `undeclared`, `no-operation`,
    /// `method`, `media-type`, `json`, `body-required`, `no-body`.
    pub rule: String,
    /// A sentence naming the field and the rule.
    pub message: String,
}

/// Why a request could not be passed.
#[derive(Debug, Clone)]
pub enum Rejection {
    /// The document rejects the request.
    Violation(Box<SchemaViolation>),
    /// The validator itself failed (document not loaded, a schema that does not compile):
    /// the request could not be judged.
    CannotJudge(String),
}

/// A request as the validator sees it.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    /// HTTP method (any case).
    pub method: &'a str,
    /// Full request path, starting with `/client/v4`.
    pub path: &'a str,
    /// Raw query string (without `?`).
    pub query: Option<&'a str>,
    /// `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// The raw body (empty when none was sent).
    pub body: &'a [u8],
}

/// Why no operation was found.
enum Miss {
    /// No path template matches.
    NoPath,
    /// A template matches, but none has the method.
    NoMethod,
}

enum Seg {
    Lit(String),
    Param(String),
}

struct PathEntry {
    template: String,
    segs: Vec<Seg>,
}

/// How a query or path string is read before it is validated.
#[derive(Debug, Clone, PartialEq)]
enum Prim {
    Str,
    Number,
    Integer,
    Boolean,
    Array(Box<Prim>),
}

struct ParamCheck {
    name: String,
    required: bool,
    prim: Prim,
    validator: Validator,
}

enum BodyCheck {
    /// The operation declares no request body.
    None,
    /// A body is declared.
    Declared {
        required: bool,
        /// Media types the operation accepts.
        media_types: Vec<String>,
        /// The JSON schema, when one is given.
        validator: Option<Validator>,
    },
}

struct CompiledOp {
    operation_id: String,
    path_params: Vec<ParamCheck>,
    query_params: Vec<ParamCheck>,
    body: BodyCheck,
}

type CacheKey = (String, usize);

/// The loaded document with its path index and the per-operation validator cache.
pub struct OpenApi {
    doc: Value,
    paths: Vec<PathEntry>,
    load_time: Duration,
    cache: Mutex<HashMap<CacheKey, Arc<Result<CompiledOp, String>>>>,
}

impl std::fmt::Debug for OpenApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenApi")
            .field("paths", &self.paths.len())
            .field("load_time", &self.load_time)
            .finish_non_exhaustive()
    }
}

static DOCUMENT: OnceLock<Result<OpenApi, String>> = OnceLock::new();

/// The document, loaded (and its checksum verified) on first use, once per process.
pub fn document() -> Result<&'static OpenApi, String> {
    DOCUMENT
        .get_or_init(|| OpenApi::load(DOC_GZ))
        .as_ref()
        .map_err(Clone::clone)
}

impl OpenApi {
    /// Decompresses, checks the SHA-256 and indexes the document.
    fn load(gz: &[u8]) -> Result<Self, String> {
        let started = Instant::now();
        let mut raw = Vec::with_capacity(4 << 20);
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut raw)
            .map_err(|e| format!("the vendored OpenAPI document does not decompress: {e}"))?;
        let sha: String = Sha256::digest(&raw)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if sha != DOC_SHA256 {
            return Err(format!(
                "the vendored OpenAPI document has sha256 {sha}, expected {DOC_SHA256}"
            ));
        }
        let doc: Value = serde_json::from_slice(&raw)
            .map_err(|e| format!("the vendored OpenAPI document is not JSON: {e}"))?;
        let paths = doc["paths"]
            .as_object()
            .ok_or("the OpenAPI document has no paths")?
            .keys()
            .map(|template| PathEntry {
                template: template.clone(),
                segs: template
                    .trim_start_matches('/')
                    .split('/')
                    .map(
                        |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(name) => Seg::Param(name.to_owned()),
                            None => Seg::Lit(s.to_owned()),
                        },
                    )
                    .collect(),
            })
            .collect();
        let api = OpenApi {
            doc,
            paths,
            load_time: Duration::ZERO,
            cache: Mutex::new(HashMap::new()),
        };
        api.check_overlay()?;
        Ok(OpenApi {
            load_time: started.elapsed(),
            ..api
        })
    }

    /// How long loading took (decompress, checksum, parse, index, overlay check).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Number of paths in the document.
    pub fn path_count(&self) -> usize {
        self.paths.len()
    }

    fn schemas(&self) -> &Map<String, Value> {
        static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
        self.doc["components"]["schemas"]
            .as_object()
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// Every overlay entry must name something that exists and must still be needed.
    fn check_overlay(&self) -> Result<(), String> {
        let uncited = ADDITIONS
            .iter()
            .map(|a| (a.path, a.source))
            .chain(COMPONENT_PATCHES.iter().map(|p| (p.component, p.source)))
            .find(|(_, source)| source.trim().is_empty());
        if let Some((what, _)) = uncited {
            return Err(format!("overlay: the entry for {what} cites no source"));
        }
        for p in COMPONENT_PATCHES {
            let c = self.schemas().get(p.component).ok_or_else(|| {
                format!("overlay: component {} is not in the document", p.component)
            })?;
            for alt in p.add_one_of {
                let alt = parse_overlay_schema(alt)?;
                let existing = c["oneOf"]
                    .as_array()
                    .ok_or_else(|| format!("overlay: component {} has no oneOf", p.component))?;
                let mut cv = Converter::new(self.schemas());
                for name in alt["required"].as_array().into_iter().flatten() {
                    let name = name.as_str().unwrap_or_default();
                    if existing
                        .iter()
                        .any(|e| cv.declared_properties(e, 0).contains(name))
                    {
                        return Err(format!(
                            "overlay: {} already has an alternative with {name}: the entry is stale",
                            p.component
                        ));
                    }
                }
            }
            for name in p.not_required {
                let listed = c["required"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|v| v == name));
                if !listed {
                    return Err(format!(
                        "overlay: {}.{name} is not required in the document: the entry is stale",
                        p.component
                    ));
                }
            }
        }
        for a in ADDITIONS {
            let op = self.doc["paths"][a.path]
                .get(a.method.to_ascii_lowercase())
                .ok_or_else(|| format!("overlay: no operation {} {}", a.method, a.path))?;
            match a.patch {
                Patch::QueryParam { name, schema } => {
                    parse_overlay_schema(schema)?;
                    let params = self.operation_params(&self.doc["paths"][a.path], op);
                    if params
                        .iter()
                        .any(|p| p["in"] == "query" && p["name"] == name)
                    {
                        return Err(format!(
                            "overlay: {} {} already declares query parameter {name}: the entry is stale",
                            a.method, a.path
                        ));
                    }
                }
                Patch::BodyProperty { name, schema } => {
                    parse_overlay_schema(schema)?;
                    let body = self.body_schema(op).ok_or_else(|| {
                        format!("overlay: {} {} has no JSON body", a.method, a.path)
                    })?;
                    let mut cv = Converter::new(self.schemas());
                    if cv.declared_properties(body, 0).contains(name) {
                        return Err(format!(
                            "overlay: {} {} already declares body property {name}: the entry is stale",
                            a.method, a.path
                        ));
                    }
                }
                Patch::BodySchema { schema } => {
                    parse_overlay_schema(schema)?;
                }
            }
        }
        Ok(())
    }

    fn resolve_component<'a>(&'a self, v: &'a Value, kind: &str) -> &'a Value {
        let prefix = format!("#/components/{kind}/");
        match v
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(&prefix))
        {
            Some(name) => &self.doc["components"][kind][name],
            None => v,
        }
    }

    /// Path-level and operation-level parameters (the latter win), `$ref`s resolved.
    fn operation_params<'a>(&'a self, item: &'a Value, op: &'a Value) -> Vec<&'a Value> {
        let mut out: Vec<&Value> = Vec::new();
        let lists = [item.get("parameters"), op.get("parameters")];
        for list in lists.into_iter().flatten().filter_map(Value::as_array) {
            for p in list {
                let p = self.resolve_component(p, "parameters");
                out.retain(|q| !(q["name"] == p["name"] && q["in"] == p["in"]));
                out.push(p);
            }
        }
        out
    }

    fn request_body<'a>(&'a self, op: &'a Value) -> Option<&'a Value> {
        op.get("requestBody")
            .map(|b| self.resolve_component(b, "requestBodies"))
    }

    fn body_schema<'a>(&'a self, op: &'a Value) -> Option<&'a Value> {
        self.request_body(op)?
            .get("content")?
            .get("application/json")?
            .get("schema")
    }

    /// Finds the operation: the most specific matching template (literal segments beat
    /// parameters, earlier segments first) that has this method.
    fn find(&self, method: &str, api_path: &str) -> Result<(usize, Vec<(String, String)>), Miss> {
        let segs: Vec<&str> = api_path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(Vec<bool>, usize)> = None;
        let mut path_known = false;
        for (i, entry) in self.paths.iter().enumerate() {
            if entry.segs.len() != segs.len() {
                continue;
            }
            let mut shape = Vec::with_capacity(segs.len());
            let fits = entry.segs.iter().zip(&segs).all(|(t, s)| match t {
                Seg::Lit(l) => {
                    shape.push(true);
                    l == s
                }
                Seg::Param(_) => {
                    shape.push(false);
                    !s.is_empty()
                }
            });
            if !fits {
                continue;
            }
            path_known = true;
            if self.doc["paths"][&entry.template].get(method).is_none() {
                continue;
            }
            if best.as_ref().is_none_or(|(b, _)| shape > *b) {
                best = Some((shape, i));
            }
        }
        match best {
            Some((_, i)) => {
                let params = self.paths[i]
                    .segs
                    .iter()
                    .zip(&segs)
                    .filter_map(|(t, s)| match t {
                        Seg::Param(name) => Some((name.clone(), percent_decode_path(s))),
                        Seg::Lit(_) => None,
                    })
                    .collect();
                Ok((i, params))
            }
            None if path_known => Err(Miss::NoMethod),
            None => Err(Miss::NoPath),
        }
    }

    fn compiled(&self, method: &str, idx: usize) -> Arc<Result<CompiledOp, String>> {
        let key = (method.to_owned(), idx);
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return c.clone();
        }
        // Compiled outside the lock; a concurrent first use compiles twice, harmlessly.
        let c = Arc::new(self.compile(method, idx));
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert(c)
            .clone()
    }

    fn compile(&self, method: &str, idx: usize) -> Result<CompiledOp, String> {
        let template = &self.paths[idx].template;
        let item = &self.doc["paths"][template];
        let op = &item[method];
        let operation_id = op["operationId"].as_str().unwrap_or("").to_owned();
        let upper = method.to_ascii_uppercase();
        let additions: Vec<_> = ADDITIONS
            .iter()
            .filter(|a| a.method == upper && a.path == template)
            .collect();
        let mut path_params = Vec::new();
        let mut query_params = Vec::new();
        for p in self.operation_params(item, op) {
            let name = p["name"].as_str().unwrap_or("").to_owned();
            let schema = p.get("schema").cloned().unwrap_or_else(|| json!({}));
            let check = |required: bool| -> Result<ParamCheck, String> {
                Ok(ParamCheck {
                    prim: self.prim(&schema),
                    validator: self.compile_schema(&schema, &[])?,
                    name: name.clone(),
                    required,
                })
            };
            match p["in"].as_str() {
                Some("path") => path_params.push(check(true)?),
                Some("query") => query_params.push(check(p["required"] == true)?),
                _ => {} // header and cookie parameters are not judged
            }
        }
        let mut extra_props = Vec::new();
        let mut body_override = None;
        for a in &additions {
            match a.patch {
                Patch::QueryParam { name, schema } => {
                    let schema = parse_overlay_schema(schema)?;
                    query_params.push(ParamCheck {
                        name: name.to_owned(),
                        required: false,
                        prim: self.prim(&schema),
                        validator: self.compile_schema(&schema, &[])?,
                    });
                }
                Patch::BodyProperty { name, schema } => {
                    extra_props.push((name.to_owned(), parse_overlay_schema(schema)?));
                }
                Patch::BodySchema { schema } => body_override = Some(parse_overlay_schema(schema)?),
            }
        }
        let body = match self.request_body(op) {
            None => BodyCheck::None,
            Some(rb) => {
                let media_types = rb["content"]
                    .as_object()
                    .map(|c| c.keys().cloned().collect())
                    .unwrap_or_default();
                let schema = body_override.as_ref().or_else(|| self.body_schema(op));
                let validator = match schema {
                    Some(s) => Some(
                        self.compile_schema(s, &extra_props)
                            .map_err(|e| format!("{operation_id}: request body: {e}"))?,
                    ),
                    None => None,
                };
                BodyCheck::Declared {
                    required: rb["required"] == true,
                    media_types,
                    validator,
                }
            }
        };
        Ok(CompiledOp {
            operation_id,
            path_params,
            query_params,
            body,
        })
    }

    /// Converts an OpenAPI schema (plus root properties from the overlay) to JSON Schema
    /// 2020-12 with the components it reaches, and compiles it.
    fn compile_schema(
        &self,
        schema: &Value,
        extra: &[(String, Value)],
    ) -> Result<Validator, String> {
        let mut cv = Converter::new(self.schemas());
        let extra_props: Map<String, Value> = extra.iter().cloned().collect();
        let resolved = resolve(self.schemas(), schema, 0);
        let split = resolved.and_then(|r| {
            ["anyOf", "oneOf"]
                .into_iter()
                .find(|k| r.get(*k).is_some_and(Value::is_array))
                .map(|k| (r, k))
        });
        let mut root = if extra.is_empty() {
            cv.at_location(schema)
        } else if let Some((r, k)) = split {
            // Root alternatives: each one gets the overlay's properties, so that each
            // still declares the whole body by itself. The root component keeps its own
            // overlay patch (e.g. DNS `id` not required).
            let mut inline = match root_component(self.schemas(), schema) {
                Some(name) => patched_component(name, r)?,
                None => r.clone(),
            };
            for alt in inline[k].as_array_mut().into_iter().flatten() {
                *alt = json!({"allOf": [alt.clone(), {"properties": extra_props.clone()}]});
            }
            cv.at_location(&inline)
        } else {
            let mut props = Map::new();
            for (name, s) in extra {
                props.insert(name.clone(), cv.at_location(s));
            }
            let mut wrapper = json!({"allOf": [cv.convert(schema)], "properties": props});
            if cv.is_closed(schema, 0) {
                wrapper["unevaluatedProperties"] = json!(false);
            }
            wrapper
        };
        let defs = cv.finish()?;
        let obj = root
            .as_object_mut()
            .ok_or("a schema that is not an object")?;
        obj.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        if !defs.is_empty() {
            obj.insert("$defs".into(), Value::Object(defs));
        }
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("schema does not compile: {e}"))
    }

    /// The type a parameter string is read as.
    fn prim(&self, schema: &Value) -> Prim {
        self.prim_depth(schema, 0).unwrap_or(Prim::Str)
    }

    fn prim_depth(&self, schema: &Value, depth: usize) -> Option<Prim> {
        if depth > 16 {
            return None;
        }
        let s = resolve(self.schemas(), schema, 0)?;
        match s.get("type").and_then(Value::as_str) {
            Some("number") => return Some(Prim::Number),
            Some("integer") => return Some(Prim::Integer),
            Some("boolean") => return Some(Prim::Boolean),
            Some("string") => return Some(Prim::Str),
            Some("array") => {
                let items = s.get("items").map_or(Prim::Str, |i| {
                    self.prim_depth(i, depth + 1).unwrap_or(Prim::Str)
                });
                return Some(Prim::Array(Box::new(items)));
            }
            _ => {}
        }
        ["allOf", "oneOf", "anyOf"]
            .iter()
            .filter_map(|k| s.get(*k).and_then(Value::as_array))
            .flatten()
            .find_map(|m| self.prim_depth(m, depth + 1))
    }

    /// Checks one request. `Ok` carries the `operationId`.
    pub fn validate(&self, req: &ApiRequest<'_>) -> Result<String, Rejection> {
        let method = req.method.to_ascii_lowercase();
        let api_path = req.path.strip_prefix(API_PREFIX).unwrap_or(req.path);
        let violation = |op: Option<&str>, part: Part, field: &str, rule: &str, message: String| {
            Rejection::Violation(Box::new(SchemaViolation {
                method: req.method.to_ascii_uppercase(),
                path: req.path.to_owned(),
                query: req.query.map(str::to_owned),
                operation_id: op.map(str::to_owned),
                part,
                field: field.to_owned(),
                rule: rule.to_owned(),
                message,
            }))
        };
        if !HTTP_METHODS.contains(&method.as_str()) {
            return Err(violation(
                None,
                Part::Operation,
                "",
                "method",
                format!("{} is not an HTTP method the document uses", req.method),
            ));
        }
        let (idx, path_values) = match self.find(&method, api_path) {
            Ok(found) => found,
            Err(Miss::NoPath) => {
                return Err(violation(
                    None,
                    Part::Operation,
                    "",
                    "no-operation",
                    format!("the OpenAPI document has no path matching {api_path}"),
                ))
            }
            Err(Miss::NoMethod) => {
                return Err(violation(
                    None,
                    Part::Operation,
                    "",
                    "method",
                    format!(
                        "the OpenAPI document has no {} operation on {api_path}",
                        req.method.to_ascii_uppercase()
                    ),
                ))
            }
        };
        let compiled = self.compiled(&method, idx);
        let op = compiled.as_ref().as_ref().map_err(|e| {
            Rejection::CannotJudge(format!(
                "{} {}: {e}",
                req.method.to_ascii_uppercase(),
                self.paths[idx].template
            ))
        })?;
        let opid = Some(op.operation_id.as_str());

        // Path parameters.
        for p in &op.path_params {
            let Some((_, raw)) = path_values.iter().find(|(n, _)| *n == p.name) else {
                continue;
            };
            let value = coerce(&p.prim, std::slice::from_ref(raw));
            if let Some((rule, what)) = first_error(&p.validator, &value) {
                return Err(violation(
                    opid,
                    Part::Path,
                    &p.name,
                    &rule,
                    format!("path parameter {}: {what}", p.name),
                ));
            }
        }

        // Query parameters.
        let params = Params::parse(req.query);
        let mut grouped: Vec<(&str, Vec<String>)> = Vec::new();
        for (k, v) in params.pairs() {
            match grouped.iter_mut().find(|(n, _)| n == k) {
                Some((_, vs)) => vs.push(v.clone()),
                None => grouped.push((k.as_str(), vec![v.clone()])),
            }
        }
        for (name, values) in &grouped {
            let Some(p) = op.query_params.iter().find(|p| p.name == *name) else {
                let mut declared: Vec<&str> =
                    op.query_params.iter().map(|p| p.name.as_str()).collect();
                declared.sort_unstable();
                return Err(violation(
                    opid,
                    Part::Query,
                    name,
                    "undeclared",
                    format!(
                        "query parameter {name} is not declared for {} (declared: {})",
                        op.operation_id,
                        if declared.is_empty() {
                            "none".to_owned()
                        } else {
                            declared.join(", ")
                        }
                    ),
                ));
            };
            let checks: Vec<Value> = match p.prim {
                Prim::Array(_) => vec![coerce(&p.prim, values)],
                _ => values
                    .iter()
                    .map(|v| coerce(&p.prim, std::slice::from_ref(v)))
                    .collect(),
            };
            for value in checks {
                if let Some((rule, what)) = first_error(&p.validator, &value) {
                    return Err(violation(
                        opid,
                        Part::Query,
                        name,
                        &rule,
                        format!("query parameter {name}: {what}"),
                    ));
                }
            }
        }
        if let Some(p) = op
            .query_params
            .iter()
            .find(|p| p.required && !grouped.iter().any(|(n, _)| *n == p.name))
        {
            return Err(violation(
                opid,
                Part::Query,
                &p.name,
                "required",
                format!("query parameter {} is required", p.name),
            ));
        }

        // Body.
        let present = !req.body.iter().all(u8::is_ascii_whitespace);
        match &op.body {
            BodyCheck::None if present => {
                return Err(violation(
                    opid,
                    Part::Body,
                    "",
                    "no-body",
                    format!("{} takes no request body", op.operation_id),
                ))
            }
            BodyCheck::None => {}
            BodyCheck::Declared { required, .. } if !present => {
                if *required && method != "delete" {
                    return Err(violation(
                        opid,
                        Part::Body,
                        "",
                        "body-required",
                        format!("{} requires a request body", op.operation_id),
                    ));
                }
            }
            BodyCheck::Declared {
                media_types,
                validator,
                ..
            } => {
                let json_op = media_types.iter().any(|m| m == "application/json");
                let sent = req.content_type.map(|c| {
                    c.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                });
                if let Some(ct) = &sent {
                    if !media_types.iter().any(|m| m.eq_ignore_ascii_case(ct)) {
                        return Err(violation(
                            opid,
                            Part::Body,
                            "",
                            "media-type",
                            format!(
                                "Content-Type {ct} is not accepted (the operation takes {})",
                                media_types.join(", ")
                            ),
                        ));
                    }
                }
                if json_op && sent.as_deref().is_none_or(|c| c == "application/json") {
                    let value: Value = serde_json::from_slice(req.body).map_err(|e| {
                        violation(
                            opid,
                            Part::Body,
                            "",
                            "json",
                            format!("Malformed JSON in request body: {e}"),
                        )
                    })?;
                    if let Some(v) = validator {
                        if let Some((field, rule, what)) = body_error(v, &value) {
                            let message = if field.is_empty() {
                                format!("request body: {what}")
                            } else {
                                format!("request body field {field}: {what}")
                            };
                            return Err(violation(opid, Part::Body, &field, &rule, message));
                        }
                    }
                }
            }
        }
        Ok(op.operation_id.clone())
    }
}

fn parse_overlay_schema(s: &str) -> Result<Value, String> {
    serde_json::from_str(s).map_err(|e| format!("overlay schema is not JSON ({e}): {s}"))
}

/// Follows `$ref`s into `#/components/schemas`.
/// The component a `$ref` chain ends in, if `s` is one.
fn root_component<'a>(schemas: &'a Map<String, Value>, s: &'a Value) -> Option<&'a str> {
    let mut name = None;
    let mut cur = s;
    for _ in 0..32 {
        let Some(r) = cur.get("$ref").and_then(Value::as_str) else {
            return name;
        };
        let n = r.strip_prefix("#/components/schemas/")?;
        name = Some(n);
        cur = schemas.get(n)?;
    }
    None
}

/// A component with its overlay patch (fields not required, alternatives added) applied.
fn patched_component(name: &str, raw: &Value) -> Result<Value, String> {
    let Some(patch) = COMPONENT_PATCHES.iter().find(|p| p.component == name) else {
        return Ok(raw.clone());
    };
    let mut patched = raw.clone();
    if let Some(req) = patched.get_mut("required").and_then(Value::as_array_mut) {
        req.retain(|v| !patch.not_required.iter().any(|n| v == n));
    }
    if let Some(alts) = patched.get_mut("oneOf").and_then(Value::as_array_mut) {
        for alt in patch.add_one_of {
            alts.push(parse_overlay_schema(alt)?);
        }
    }
    Ok(patched)
}

fn resolve<'a>(schemas: &'a Map<String, Value>, s: &'a Value, depth: usize) -> Option<&'a Value> {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) if depth < 32 => {
            let name = r.strip_prefix("#/components/schemas/")?;
            resolve(schemas, schemas.get(name)?, depth + 1)
        }
        Some(_) => None,
        None => Some(s),
    }
}

/// Escapes a component name for a JSON pointer inside a URI fragment.
fn pointer_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c if c.is_ascii_alphanumeric() || "-._".contains(c) => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

/// OpenAPI 3.0 → JSON Schema 2020-12, collecting the components the result refers to.
struct Converter<'a> {
    schemas: &'a Map<String, Value>,
    pending: Vec<String>,
    queued: HashSet<String>,
    closed_cache: HashMap<String, bool>,
}

impl<'a> Converter<'a> {
    fn new(schemas: &'a Map<String, Value>) -> Self {
        Self {
            schemas,
            pending: Vec::new(),
            queued: HashSet::new(),
            closed_cache: HashMap::new(),
        }
    }

    /// Converts the components referred to so far (and those they refer to).
    fn finish(&mut self) -> Result<Map<String, Value>, String> {
        let mut defs = Map::new();
        while let Some(name) = self.pending.pop() {
            let raw = self
                .schemas
                .get(&name)
                .ok_or_else(|| format!("$ref to missing component {name}"))?;
            let converted = self.convert(&patched_component(&name, raw)?);
            defs.insert(name, converted);
        }
        Ok(defs)
    }

    /// A schema at a place where a new value starts (the body, a property value, an
    /// array item): closed objects get `unevaluatedProperties: false`.
    fn at_location(&mut self, s: &Value) -> Value {
        let mut out = self.convert(s);
        if self.is_closed(s, 0) {
            if let Some(o) = out.as_object_mut() {
                o.insert("unevaluatedProperties".into(), Value::Bool(false));
            }
        }
        out
    }

    fn convert(&mut self, s: &Value) -> Value {
        let Some(m) = s.as_object() else {
            return s.clone();
        };
        if let Some(r) = m.get("$ref").and_then(Value::as_str) {
            return match r.strip_prefix("#/components/schemas/") {
                Some(name) => {
                    if self.queued.insert(name.to_owned()) {
                        self.pending.push(name.to_owned());
                    }
                    json!({"$ref": format!("#/$defs/{}", pointer_escape(name))})
                }
                // Never seen in the document; keep it so compiling fails loudly.
                None => json!({"$ref": r}),
            };
        }
        let read_only = self.read_only_properties(s);
        let mut out = Map::new();
        for (k, v) in m {
            match k.as_str() {
                "properties" => {
                    let props: Map<String, Value> = v
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(name, ps)| (name.clone(), self.at_location(ps)))
                        .collect();
                    out.insert(k.clone(), Value::Object(props));
                }
                "items" | "additionalProperties" if v.is_object() => {
                    out.insert(k.clone(), self.at_location(v));
                }
                "allOf" => {
                    let list: Vec<Value> = v
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|x| self.convert(x))
                        .collect();
                    out.insert(k.clone(), Value::Array(list));
                }
                "anyOf" | "oneOf" => {
                    let outside = self.declared_outside(m, k);
                    let list: Vec<Value> = v
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|x| self.alternative(x, &outside))
                        .collect();
                    out.insert(k.clone(), Value::Array(list));
                }
                "not" => {
                    out.insert(k.clone(), self.convert(v));
                }
                "required" => {
                    let kept: Vec<Value> = v
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|n| n.as_str().is_none_or(|n| !read_only.contains(n)))
                        .cloned()
                        .collect();
                    if !kept.is_empty() {
                        out.insert(k.clone(), Value::Array(kept));
                    }
                }
                "format" => {
                    if v.as_str().is_some_and(|f| ASSERTED_FORMATS.contains(&f)) {
                        out.insert(k.clone(), v.clone());
                    }
                }
                _ if DROPPED_KEYWORDS.contains(&k.as_str()) || k.starts_with("x-") => {}
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        if m.get("nullable") == Some(&Value::Bool(true)) {
            if let Some(e) = out.get_mut("enum").and_then(Value::as_array_mut) {
                if !e.contains(&Value::Null) {
                    e.push(Value::Null);
                }
            }
            match out.get("type").cloned() {
                Some(Value::String(t)) => {
                    out.insert("type".into(), json!([t, "null"]));
                }
                Some(_) => {}
                None => return json!({"anyOf": [{"type": "null"}, Value::Object(out)]}),
            }
        }
        Value::Object(out)
    }

    /// Property names a schema declares outside its `anyOf`/`oneOf` keyword `except`.
    fn declared_outside(&mut self, m: &Map<String, Value>, except: &str) -> Vec<String> {
        let mut own = m.clone();
        own.remove(except);
        let mut names: Vec<String> = self
            .declared_properties(&Value::Object(own), 0)
            .into_iter()
            .collect();
        names.sort_unstable();
        names
    }

    /// One `anyOf`/`oneOf` alternative. An alternative that declares properties must
    /// declare (with the schema around it) every property of the object by itself:
    /// otherwise properties of two loose alternatives (e.g. a SaaS app's `tags` and an
    /// App Launcher's `session_duration`) would together pass a body that fits neither.
    fn alternative(&mut self, x: &Value, outside: &[String]) -> Value {
        let c = self.convert(x);
        if !self.is_closed(x, 0) {
            return c;
        }
        if outside.is_empty() {
            let mut c = c;
            if let Some(o) = c.as_object_mut() {
                o.insert("unevaluatedProperties".into(), Value::Bool(false));
            }
            return c;
        }
        let known: Map<String, Value> = outside
            .iter()
            .map(|n| (n.clone(), Value::Bool(true)))
            .collect();
        json!({"allOf": [c], "properties": known, "unevaluatedProperties": false})
    }

    /// Names of `readOnly` properties declared at this location (own `properties` and
    /// those of `allOf`/`anyOf`/`oneOf` members, through `$ref`s).
    fn read_only_properties(&self, s: &Value) -> HashSet<String> {
        let mut out = HashSet::new();
        self.collect_read_only(s, 0, &mut out);
        out
    }

    fn collect_read_only(&self, s: &Value, depth: usize, out: &mut HashSet<String>) {
        if depth > 16 {
            return;
        }
        let Some(s) = resolve(self.schemas, s, 0) else {
            return;
        };
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (name, ps) in props {
                if resolve(self.schemas, ps, 0).is_some_and(|p| p["readOnly"] == true) {
                    out.insert(name.clone());
                }
            }
        }
        for k in ["allOf", "anyOf", "oneOf"] {
            for m in s.get(k).and_then(Value::as_array).into_iter().flatten() {
                self.collect_read_only(m, depth + 1, out);
            }
        }
    }

    /// Property names declared at this location.
    fn declared_properties(&mut self, s: &Value, depth: usize) -> HashSet<String> {
        let mut out = HashSet::new();
        if depth > 16 {
            return out;
        }
        let Some(s) = resolve(self.schemas, s, 0) else {
            return out;
        };
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            out.extend(props.keys().cloned());
        }
        for k in ["allOf", "anyOf", "oneOf"] {
            for m in s.get(k).and_then(Value::as_array).into_iter().flatten() {
                out.extend(self.declared_properties(m, depth + 1));
            }
        }
        out
    }

    /// True when this location declares properties and no `additionalProperties`
    /// (through `$ref`s and `allOf`/`anyOf`/`oneOf`).
    fn is_closed(&mut self, s: &Value, depth: usize) -> bool {
        let (has_props, open) = self.shape(s, depth);
        has_props && !open
    }

    fn shape(&mut self, s: &Value, depth: usize) -> (bool, bool) {
        if depth > 16 {
            return (false, true);
        }
        if let Some(name) = s
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
        {
            if let Some(&closed) = self.closed_cache.get(name) {
                return (closed, !closed);
            }
            // Guard against cycles: assume open while computing.
            self.closed_cache.insert(name.to_owned(), false);
            let r = match self.schemas.get(name) {
                Some(target) => self.shape(target, depth + 1),
                None => (false, true),
            };
            self.closed_cache.insert(name.to_owned(), r.0 && !r.1);
            return r;
        }
        let mut has_props = s
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| !p.is_empty());
        let mut open = s
            .get("additionalProperties")
            .is_some_and(|a| *a != Value::Bool(false));
        for k in ["allOf", "anyOf", "oneOf"] {
            for m in s.get(k).and_then(Value::as_array).into_iter().flatten() {
                let (p, o) = self.shape(m, depth + 1);
                has_props |= p;
                open |= o;
            }
        }
        (has_props, open)
    }
}

/// Reads parameter strings as the parameter's type; unparsable values stay strings so
/// the schema reports a type error.
fn coerce(prim: &Prim, raw: &[String]) -> Value {
    match prim {
        Prim::Array(item) => Value::Array(
            raw.iter()
                .map(|v| coerce(item, std::slice::from_ref(v)))
                .collect(),
        ),
        _ => {
            let s = raw.first().map(String::as_str).unwrap_or("");
            match prim {
                Prim::Integer | Prim::Number => s
                    .parse::<i64>()
                    .ok()
                    .map(Value::from)
                    .or_else(|| {
                        s.parse::<f64>()
                            .ok()
                            .filter(|f| f.is_finite())
                            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                    })
                    .unwrap_or_else(|| Value::String(s.to_owned())),
                Prim::Boolean => match s {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => Value::String(s.to_owned()),
                },
                _ => Value::String(s.to_owned()),
            }
        }
    }
}

/// An error reduced to what the report needs, with `anyOf`/`oneOf` alternatives kept.
struct Found {
    path: Vec<String>,
    /// How many properties an `unevaluatedProperties` error names.
    unexpected: usize,
    keyword: String,
    what: String,
    alternatives: Vec<Vec<Found>>,
}

fn segments(loc: &jsonschema::paths::Location) -> Vec<String> {
    loc.iter()
        .map(|s| match s {
            LocationSegment::Property(p) => p.into_owned(),
            LocationSegment::Index(i) => format!("[{i}]"),
        })
        .collect()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A short rendering of an offending value: numbers and booleans as they are, strings
/// only when short (and never for a field named like a secret or token), other values
/// by type.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() <= 40 => format!("{s:?}"),
        Value::String(s) => format!("a string of {} characters", s.chars().count()),
        Value::Number(_) | Value::Bool(_) | Value::Null => v.to_string(),
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(_) => "an object".to_owned(),
    }
}

fn found(e: &ValidationError<'_>) -> Found {
    let mut path = segments(e.instance_path());
    // Values of secret-looking fields are never quoted, whatever their length.
    let secret = path.last().is_some_and(|p| {
        let p = p.to_ascii_lowercase();
        p.contains("secret") || p.contains("token") || p.contains("password")
    });
    let masked = Value::String("x".repeat(41));
    let instance: &Value = if secret && e.instance().is_string() {
        &masked
    } else {
        e.instance()
    };
    let kind = e.kind();
    let mut alternatives = Vec::new();
    let mut unexpected_count = 0;
    let what = match kind {
        ValidationErrorKind::Type { kind } => {
            let want = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(ts) => ts
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            format!(
                "must be of type {want} (got {}: {})",
                json_type(instance),
                shown(instance)
            )
        }
        ValidationErrorKind::Required { property } => {
            let p = property.as_str().unwrap_or_default().to_owned();
            path.push(p.clone());
            format!("required property {p:?} is missing")
        }
        ValidationErrorKind::Enum { options } => {
            format!("must be one of {options} (got {})", shown(instance))
        }
        ValidationErrorKind::Constant { expected_value } => {
            format!("must be {expected_value} (got {})", shown(instance))
        }
        ValidationErrorKind::Minimum { limit } => {
            format!("must be at least {limit} (got {})", shown(instance))
        }
        ValidationErrorKind::Maximum { limit } => {
            format!("must be at most {limit} (got {})", shown(instance))
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            format!("must be greater than {limit} (got {})", shown(instance))
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            format!("must be less than {limit} (got {})", shown(instance))
        }
        ValidationErrorKind::MinLength { limit } => format!(
            "must be at least {limit} characters long (got {})",
            e.instance().as_str().map_or(0, |s| s.chars().count())
        ),
        ValidationErrorKind::MaxLength { limit } => format!(
            "must be at most {limit} characters long (got {})",
            e.instance().as_str().map_or(0, |s| s.chars().count())
        ),
        ValidationErrorKind::MinItems { limit } => format!("must have at least {limit} items"),
        ValidationErrorKind::MaxItems { limit } => format!("must have at most {limit} items"),
        ValidationErrorKind::UniqueItems => "items must be unique".to_owned(),
        ValidationErrorKind::Pattern { pattern } => {
            format!("must match the pattern {pattern} (got {})", shown(instance))
        }
        ValidationErrorKind::Format { format } => {
            format!("must be a valid {format} (got {})", shown(instance))
        }
        ValidationErrorKind::UnevaluatedProperties { unexpected }
        | ValidationErrorKind::AdditionalProperties { unexpected } => {
            unexpected_count = unexpected.len();
            if let Some(first) = unexpected.first() {
                path.push(first.clone());
            }
            format!(
                "the schema declares no such property ({})",
                unexpected.join(", ")
            )
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            alternatives = context
                .iter()
                .map(|branch| branch.iter().map(found).collect())
                .collect();
            format!(
                "fits none of the {} alternatives ({})",
                context.len(),
                kind.keyword()
            )
        }
        ValidationErrorKind::OneOfMultipleValid { context } => format!(
            "fits more than one of the {} oneOf alternatives",
            context.len()
        ),
        other => format!("breaks the {} rule", other.keyword()),
    };
    Found {
        path,
        unexpected: unexpected_count,
        keyword: kind.keyword().to_owned(),
        what,
        alternatives,
    }
}

/// Among failed alternatives, the one that most likely was meant: fewest errors on a
/// direct child constrained by `enum`/`const` (a `type: CNAME` does not fit the A
/// record alternative), then fewest real errors (or, for an alternative whose only
/// complaint is undeclared properties, fewest of those), then the deepest error; ties go
/// to the earlier alternative.
fn closest<'a>(parent: &[String], alternatives: &'a [Vec<Found>]) -> Option<&'a Found> {
    let score = |branch: &Vec<Found>| {
        let mismatch = branch
            .iter()
            .filter(|f| {
                (f.keyword == "enum" || f.keyword == "const") && f.path.len() == parent.len() + 1
            })
            .count();
        let real = branch
            .iter()
            .filter(|f| f.keyword != "unevaluatedProperties")
            .count();
        let weight = if real > 0 {
            real
        } else {
            branch.iter().map(|f| f.unexpected).sum()
        };
        let depth = branch.iter().map(|f| f.path.len()).max().unwrap_or(0);
        (mismatch, weight, usize::MAX - depth)
    };
    let branch = alternatives
        .iter()
        .filter(|b| !b.is_empty())
        .min_by_key(|b| score(b))?;
    pick(branch)
}

/// The error to report: unevaluated-property errors last (they follow from other
/// failures), `anyOf`/`oneOf` failures replaced by the closest alternative's error.
fn pick(errors: &[Found]) -> Option<&Found> {
    let first = errors
        .iter()
        .find(|f| f.keyword != "unevaluatedProperties")
        .or_else(|| errors.first())?;
    if first.alternatives.is_empty() {
        return Some(first);
    }
    closest(&first.path, &first.alternatives).or(Some(first))
}

fn render_path(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if seg.starts_with('[') || out.is_empty() {
            out.push_str(seg);
        } else {
            out.push('.');
            out.push_str(seg);
        }
    }
    out
}

/// The first error of a parameter value, as (rule, sentence).
fn first_error(v: &Validator, value: &Value) -> Option<(String, String)> {
    let errors: Vec<Found> = v.iter_errors(value).map(|e| found(&e)).collect();
    let f = pick(&errors)?;
    Some((f.keyword.clone(), f.what.clone()))
}

/// The error to report for a body, as (field, rule, sentence).
fn body_error(v: &Validator, value: &Value) -> Option<(String, String, String)> {
    let errors: Vec<Found> = v.iter_errors(value).map(|e| found(&e)).collect();
    let f = pick(&errors)?;
    Some((render_path(&f.path), f.keyword.clone(), f.what.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACC: &str = "/client/v4/accounts/0123456789abcdef0123456789abcdef";
    const ZONE: &str = "/client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353";
    const TUNNEL: &str = "c1744f8b-faa1-48a4-9e5c-02ac921467fa";

    fn doc() -> &'static OpenApi {
        document().expect("the vendored document loads")
    }

    fn check(
        method: &str,
        path: &str,
        query: Option<&str>,
        body: Option<Value>,
    ) -> Result<String, Box<SchemaViolation>> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let ct = (!bytes.is_empty()).then_some("application/json");
        match doc().validate(&ApiRequest {
            method,
            path,
            query,
            content_type: ct,
            body: &bytes,
        }) {
            Ok(op) => Ok(op),
            Err(Rejection::Violation(v)) => Err(v),
            Err(Rejection::CannotJudge(e)) => panic!("cannot judge {method} {path}: {e}"),
        }
    }

    #[track_caller]
    fn ok(method: &str, path: &str, query: Option<&str>, body: Option<Value>) -> String {
        check(method, path, query, body).unwrap_or_else(|v| panic!("rejected: {v:#?}"))
    }

    #[track_caller]
    fn bad(
        method: &str,
        path: &str,
        query: Option<&str>,
        body: Option<Value>,
    ) -> Box<SchemaViolation> {
        match check(method, path, query, body) {
            Ok(op) => panic!("{method} {path} {query:?} passed as {op}"),
            Err(v) => {
                assert!(v.message.contains(&v.field), "{v:#?}");
                v
            }
        }
    }

    #[track_caller]
    fn expect(v: &SchemaViolation, part: Part, field: &str, rule: &str) {
        assert_eq!(
            (v.part, v.field.as_str(), v.rule.as_str()),
            (part, field, rule),
            "{v:#?}"
        );
    }

    fn cname() -> Value {
        json!({
            "type": "CNAME", "name": "orders.example.com",
            "content": format!("{TUNNEL}.cfargotunnel.com"), "proxied": true, "ttl": 1,
            "comment": "managed-by=ecs-tunnels;svc=arn:aws:ecs:us-east-1:1:service/prod/orders"
        })
    }

    fn app_body() -> Value {
        json!({
            "name": "orders (ecs prod)", "type": "self_hosted", "domain": "orders.example.com",
            "destinations": [{"type": "public", "uri": "orders.example.com"}],
            "session_duration": "24h", "allowed_idps": [], "auto_redirect_to_identity": false,
            "app_launcher_visible": false, "tags": ["ecs-tunnels"],
            "policies": [{"id": "f3d1b5a8-3b4e-4c1e-9d6a-2f0b9c8e7a61", "precedence": 1}]
        })
    }

    fn config() -> Value {
        json!({"config": {"ingress": [
            {"hostname": "orders.example.com", "service": "http://orders.internal:8080",
             "originRequest": {"connectTimeout": 30, "httpHostHeader": "orders.internal",
                "access": {"required": true, "teamName": "team", "audTag": ["aud1"]}}},
            {"service": "http_status:404"}
        ]}})
    }

    /// Prints what the check costs (run with `--nocapture --test-threads=1`).
    #[test]
    fn loads_and_reports_cost() {
        let d = doc();
        assert_eq!(d.path_count(), 965);
        eprintln!("OpenAPI document load: {:?}", d.load_time());
        let cases = [
            (
                "PUT",
                format!("{ACC}/cfd_tunnel/{TUNNEL}/configurations"),
                None,
                config(),
            ),
            ("POST", format!("{ACC}/access/apps"), None, app_body()),
            ("POST", format!("{ZONE}/dns_records"), None, cname()),
            (
                "GET",
                format!("{ACC}/cfd_tunnel"),
                Some("is_deleted=false&name=ecs-prod-orders&page=1&per_page=1000"),
                Value::Null,
            ),
        ];
        for (method, path, query, body) in cases {
            let body = if body.is_null() {
                Vec::new()
            } else {
                body.to_string().into_bytes()
            };
            let req = ApiRequest {
                method,
                path: &path,
                query,
                content_type: (!body.is_empty()).then_some("application/json"),
                body: &body,
            };
            let t = Instant::now();
            let op = d.validate(&req).expect("valid");
            let first = t.elapsed();
            let n = 200u32;
            let t = Instant::now();
            for _ in 0..n {
                d.validate(&req).expect("valid");
            }
            eprintln!(
                "{op}: first use (compiles) {first:?}, then {:?} per request",
                t.elapsed() / n
            );
        }
    }

    #[test]
    fn dns_record_settings() {
        let path = format!("{ZONE}/dns_records");
        let record = format!("{path}/372e67954025e0ba6aaa6d586b9e0b59");
        let mut b = cname();
        b["settings"] = json!({"ipv6_only": true});
        ok("POST", &path, None, Some(b.clone()));
        ok("PUT", &record, None, Some(b.clone()));
        ok("PATCH", &record, None, Some(b.clone()));
        // The root component's own patch still holds (no `id` in a create).
        b.as_object_mut().unwrap().remove("settings");
        ok("POST", &path, None, Some(b.clone()));
        b["settings"] = json!({"ipv6_only": "yes"});
        let v = bad("PATCH", &record, None, Some(b));
        assert_eq!(v.part, Part::Body, "{v:#?}");
    }

    #[test]
    fn dns_cname_create() {
        let path = format!("{ZONE}/dns_records");
        assert_eq!(
            ok("POST", &path, None, Some(cname())),
            "dns-records-for-a-zone-create-dns-record"
        );
        // PUT uses the same schema; readOnly fields (id, proxiable, created_on) are not
        // demanded, and may be echoed back.
        let mut echoed = cname();
        echoed["id"] = json!("372e67954025e0ba6aaa6d586b9e0b59");
        echoed["proxiable"] = json!(true);
        echoed["created_on"] = json!("2014-01-01T05:20:00.12345Z");
        ok(
            "PUT",
            &format!("{path}/372e67954025e0ba6aaa6d586b9e0b59"),
            None,
            Some(echoed),
        );

        let mut b = cname();
        b["ttl"] = json!("1");
        let v = bad("POST", &path, None, Some(b));
        expect(&v, Part::Body, "ttl", "type");
        assert!(
            v.message
                .contains("request body field ttl: must be of type number"),
            "{}",
            v.message
        );

        let mut b = cname();
        b.as_object_mut().unwrap().remove("content");
        expect(
            &bad("POST", &path, None, Some(b)),
            Part::Body,
            "content",
            "required",
        );

        let mut b = cname();
        b["type"] = json!("CNAMEX");
        let v = bad("POST", &path, None, Some(b));
        assert_eq!(
            (v.field.as_str(), v.rule.as_str()),
            ("type", "enum"),
            "{v:#?}"
        );

        let mut b = cname();
        b["ttl"] = json!(10);
        let v = bad("POST", &path, None, Some(b));
        assert_eq!(v.field, "ttl", "{v:#?}");

        let mut b = cname();
        b["proxy"] = json!(true);
        expect(
            &bad("POST", &path, None, Some(b)),
            Part::Body,
            "proxy",
            "unevaluatedProperties",
        );

        // An A record's content must be an IPv4 address (format asserted).
        let a = json!({"type": "A", "name": "a.example.com", "content": "not-an-ip", "ttl": 1});
        expect(
            &bad("POST", &path, None, Some(a)),
            Part::Body,
            "content",
            "format",
        );
    }

    #[test]
    fn tunnel_create_and_patch() {
        let path = format!("{ACC}/cfd_tunnel");
        let secret = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
        ok(
            "POST",
            &path,
            None,
            Some(
                json!({"name": "ecs-prod-orders", "config_src": "cloudflare", "tunnel_secret": secret}),
            ),
        );
        let v = bad(
            "POST",
            &path,
            None,
            Some(json!({"name": "x", "config_src": "remote"})),
        );
        expect(&v, Part::Body, "config_src", "enum");
        assert!(
            v.message.contains(r#"["local","cloudflare"]"#),
            "{}",
            v.message
        );
        expect(
            &bad(
                "POST",
                &path,
                None,
                Some(json!({"config_src": "cloudflare"})),
            ),
            Part::Body,
            "name",
            "required",
        );
        expect(
            &bad("POST", &path, None, Some(json!({"name": 5}))),
            Part::Body,
            "name",
            "type",
        );
        let one = format!("{path}/{TUNNEL}");
        ok(
            "PATCH",
            &one,
            None,
            Some(json!({ "tunnel_secret": secret })),
        );
        let v = bad(
            "PATCH",
            &one,
            None,
            Some(json!({ "tunnel_secert": secret })),
        );
        expect(&v, Part::Body, "tunnel_secert", "unevaluatedProperties");
        assert!(!v.message.contains(secret), "{}", v.message);
        // Tunnel ids are UUIDs.
        expect(
            &bad("GET", &format!("{path}/not-a-uuid"), None, None),
            Part::Path,
            "tunnel_id",
            "format",
        );
        // DELETE with the `{}` body the client sends, and without one (as the SDK does).
        ok("DELETE", &one, None, Some(json!({})));
        ok("DELETE", &one, None, None);
        ok(
            "DELETE",
            &format!("{one}/connections"),
            Some(&format!("client_id={TUNNEL}")),
            Some(json!({})),
        );
    }

    #[test]
    fn tunnel_config_put() {
        let path = format!("{ACC}/cfd_tunnel/{TUNNEL}/configurations");
        assert_eq!(
            ok("PUT", &path, None, Some(config())),
            "cloudflare-tunnel-configuration-put-configuration"
        );

        let mut b = config();
        b["config"]["ingress"][0]["originRequest"]["connectTimeout"] = json!("30s");
        let v = bad("PUT", &path, None, Some(b));
        expect(
            &v,
            Part::Body,
            "config.ingress[0].originRequest.connectTimeout",
            "type",
        );
        assert!(
            v.message.contains("must be of type integer"),
            "{}",
            v.message
        );

        let mut b = config();
        b["config"]["ingress"][1] = json!({"path": "/x"});
        expect(
            &bad("PUT", &path, None, Some(b)),
            Part::Body,
            "config.ingress[1].service",
            "required",
        );

        let mut b = config();
        b["config"]["ingress"][0]["originRequest"]["connectTimeot"] = json!(30);
        expect(
            &bad("PUT", &path, None, Some(b)),
            Part::Body,
            "config.ingress[0].originRequest.connectTimeot",
            "unevaluatedProperties",
        );

        let mut b = config();
        b["config"]["ingress"][0]["originRequest"]["access"]
            .as_object_mut()
            .unwrap()
            .remove("teamName");
        expect(
            &bad("PUT", &path, None, Some(b)),
            Part::Body,
            "config.ingress[0].originRequest.access.teamName",
            "required",
        );
    }

    #[test]
    fn access_app_create_and_put() {
        let path = format!("{ACC}/access/apps");
        assert_eq!(
            ok("POST", &path, None, Some(app_body())),
            "access-applications-add-an-application"
        );
        let one = format!("{path}/f3d1b5a8-3b4e-4c1e-9d6a-2f0b9c8e7a61");
        ok("PUT", &one, None, Some(app_body()));

        let mut b = app_body();
        b["destinations"][0]["type"] = json!("publik");
        let v = bad("POST", &path, None, Some(b));
        expect(&v, Part::Body, "destinations[0].type", "enum");

        let mut b = app_body();
        b["sesion_duration"] = json!("24h");
        let v = bad("PUT", &one, None, Some(b));
        assert_eq!(v.rule, "unevaluatedProperties", "{v:#?}");
        assert!(v.message.contains("sesion_duration"), "{}", v.message);

        let mut b = app_body();
        b["policies"][0]["precedence"] = json!("first");
        let v = bad("POST", &path, None, Some(b));
        assert!(v.field.starts_with("policies[0]"), "{v:#?}");

        // The 2024 alternatives do not pin `type`; each alternative must still declare
        // the whole body by itself, so a self-hosted body without its domain is refused
        // rather than passing as a mix of the SaaS and App Launcher alternatives.
        let mut b = app_body();
        b.as_object_mut().unwrap().remove("domain");
        expect(
            &bad("POST", &path, None, Some(b)),
            Part::Body,
            "domain",
            "required",
        );
    }

    #[test]
    fn reusable_policy_create() {
        let path = format!("{ACC}/access/policies");
        let good = json!({
            "name": "orders allow", "decision": "allow",
            "include": [{"email_domain": {"domain": "example.com"}},
                        {"email": {"email": "a@example.com"}},
                        {"group": {"id": "aa0a4aab-672b-4bdb-bc33-a59f1130a11f"}}],
            "exclude": [], "require": []
        });
        ok("POST", &path, None, Some(good.clone()));
        // `login_method` rules come from the overlay.
        let mut b = good.clone();
        b["require"] = json!([{"login_method": {"id": "aa0a4aab-672b-4bdb-bc33-a59f1130a11f"}}]);
        ok("POST", &path, None, Some(b));
        ok(
            "PUT",
            &format!("{path}/f3d1b5a8-3b4e-4c1e-9d6a-2f0b9c8e7a61"),
            None,
            Some(good.clone()),
        );
        let mut b = good.clone();
        b["decision"] = json!("permit");
        expect(
            &bad("POST", &path, None, Some(b)),
            Part::Body,
            "decision",
            "enum",
        );
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove("include");
        expect(
            &bad("POST", &path, None, Some(b)),
            Part::Body,
            "include",
            "required",
        );
        let mut b = good;
        b["include"][0] = json!({"email_domain": {"domain": 7}});
        let v = bad("POST", &path, None, Some(b));
        assert_eq!(
            (v.field.as_str(), v.rule.as_str()),
            ("include[0].email_domain.domain", "type"),
            "{v:#?}"
        );
    }

    #[test]
    fn list_queries() {
        let tunnels = format!("{ACC}/cfd_tunnel");
        ok(
            "GET",
            &tunnels,
            Some("is_deleted=false&name=ecs-prod-orders&page=1&per_page=1000"),
            None,
        );
        expect(
            &bad("GET", &tunnels, Some("per_page=1001"), None),
            Part::Query,
            "per_page",
            "maximum",
        );
        expect(
            &bad("GET", &tunnels, Some("per_page=0"), None),
            Part::Query,
            "per_page",
            "minimum",
        );
        expect(
            &bad("GET", &tunnels, Some("per_page=lots"), None),
            Part::Query,
            "per_page",
            "type",
        );
        expect(
            &bad("GET", &tunnels, Some("is_deleted=no"), None),
            Part::Query,
            "is_deleted",
            "type",
        );
        expect(
            &bad("GET", &tunnels, Some("status=sleeping"), None),
            Part::Query,
            "status",
            "enum",
        );
        let v = bad("GET", &tunnels, Some("nme=x"), None);
        expect(&v, Part::Query, "nme", "undeclared");
        assert!(v.message.contains("include_prefix"), "{}", v.message);

        ok("GET", "/client/v4/zones", Some("page=1&per_page=50"), None);
        expect(
            &bad("GET", "/client/v4/zones", Some("per_page=51"), None),
            Part::Query,
            "per_page",
            "maximum",
        );
        expect(
            &bad("GET", "/client/v4/zones", Some("per_page=4"), None),
            Part::Query,
            "per_page",
            "minimum",
        );

        let dns = format!("{ZONE}/dns_records");
        ok(
            "GET",
            &dns,
            Some("name=orders.example.com&type=CNAME&comment.startswith=managed-by%3Dx&page=1&per_page=5000"),
            None,
        );
        expect(
            &bad("GET", &dns, Some("type=CNAM"), None),
            Part::Query,
            "type",
            "enum",
        );
        expect(
            &bad("GET", &dns, Some("comment.startwith=x"), None),
            Part::Query,
            "comment.startwith",
            "undeclared",
        );

        // Access list filters and pagination come from the overlay.
        let apps = format!("{ACC}/access/apps");
        ok(
            "GET",
            &apps,
            Some("domain=orders.example.com&exact=true&page=1&per_page=100"),
            None,
        );
        expect(
            &bad("GET", &apps, Some("exact=yes"), None),
            Part::Query,
            "exact",
            "type",
        );
        expect(
            &bad("GET", &apps, Some("per_page=0"), None),
            Part::Query,
            "per_page",
            "minimum",
        );
        ok(
            "GET",
            &format!("{ACC}/access/policies"),
            Some("page=2&per_page=100"),
            None,
        );
    }

    #[test]
    fn operations_and_bodies() {
        let v = bad("GET", "/client/v4/nowhere", None, None);
        expect(&v, Part::Operation, "", "no-operation");
        let v = bad(
            "PATCH",
            "/client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353/dns_records",
            None,
            None,
        );
        expect(&v, Part::Operation, "", "method");
        // A literal segment beats a parameter.
        assert_eq!(
            ok("GET", &format!("{ACC}/access/organizations"), None, None),
            "zero-trust-organization-get-your-zero-trust-organization"
        );
        // GET takes no body.
        expect(
            &bad(
                "GET",
                &format!("{ACC}/cfd_tunnel/{TUNNEL}"),
                None,
                Some(json!({"x": 1})),
            ),
            Part::Body,
            "",
            "no-body",
        );
        // A required body may not be left out of a POST.
        expect(
            &bad("POST", &format!("{ACC}/cfd_tunnel"), None, None),
            Part::Body,
            "",
            "body-required",
        );
        // Tag create: the overlay replaces the document's bare-string body.
        ok(
            "POST",
            &format!("{ACC}/access/tags"),
            None,
            Some(json!({"name": "ecs-tunnels"})),
        );
        // Malformed JSON and a wrong media type.
        let path = format!("{ACC}/cfd_tunnel");
        let r = doc().validate(&ApiRequest {
            method: "POST",
            path: &path,
            query: None,
            content_type: Some("application/json"),
            body: b"{\"name\": ",
        });
        assert!(
            matches!(&r, Err(Rejection::Violation(v)) if v.rule == "json"),
            "{r:?}"
        );
        let r = doc().validate(&ApiRequest {
            method: "POST",
            path: &path,
            query: None,
            content_type: Some("text/plain"),
            body: b"name=x",
        });
        assert!(
            matches!(&r, Err(Rejection::Violation(v)) if v.rule == "media-type"),
            "{r:?}"
        );
    }

    #[test]
    fn conversion_rules() {
        let schemas: Map<String, Value> = serde_json::from_value(json!({
            "id": {"type": "string", "readOnly": true},
            "thing": {
                "type": "object",
                "required": ["id", "name"],
                "properties": {"id": {"$ref": "#/components/schemas/id"},
                               "name": {"type": "string", "nullable": true},
                               "kind": {"type": "string", "enum": ["a"], "nullable": true},
                               "any": {"allOf": [{"type": "object"}], "nullable": true},
                               "when": {"type": "string", "format": "date-time"},
                               "host": {"type": "string", "format": "hostname"}},
                "discriminator": {"propertyName": "kind"},
                "example": {"name": "x"},
                "x-cfPlanAvailability": {}
            }
        }))
        .unwrap();
        let mut cv = Converter::new(&schemas);
        let root = cv.at_location(&json!({"$ref": "#/components/schemas/thing"}));
        let defs = cv.finish().unwrap();
        assert_eq!(
            root,
            json!({"$ref": "#/$defs/thing", "unevaluatedProperties": false})
        );
        let thing = &defs["thing"];
        assert_eq!(
            thing["required"],
            json!(["name"]),
            "readOnly id not required"
        );
        assert_eq!(
            thing["properties"]["name"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(thing["properties"]["kind"]["enum"], json!(["a", null]));
        assert_eq!(
            thing["properties"]["any"]["anyOf"][0],
            json!({"type": "null"})
        );
        assert_eq!(thing["properties"]["when"]["format"], "date-time");
        assert!(thing["properties"]["host"].get("format").is_none());
        for gone in ["discriminator", "example", "x-cfPlanAvailability"] {
            assert!(thing.get(gone).is_none(), "{gone}");
        }
        assert!(defs.contains_key("id"));
    }

    #[test]
    fn secrets_are_not_quoted() {
        let v = jsonschema::validator_for(&json!({"properties": {
            "tunnel_secret": {"type": "integer"}, "name": {"type": "integer"}}}))
        .unwrap();
        let (field, rule, what) = body_error(&v, &json!({"tunnel_secret": "s3cr3t"})).unwrap();
        assert_eq!((field.as_str(), rule.as_str()), ("tunnel_secret", "type"));
        assert!(!what.contains("s3cr3t"), "{what}");
        let (_, _, what) = body_error(&v, &json!({"name": "orders"})).unwrap();
        assert!(what.contains("\"orders\""), "{what}");
    }

    #[test]
    fn coercion() {
        assert_eq!(coerce(&Prim::Number, &["5".into()]), json!(5));
        assert_eq!(coerce(&Prim::Number, &["2.5".into()]), json!(2.5));
        assert_eq!(coerce(&Prim::Integer, &["x".into()]), json!("x"));
        assert_eq!(coerce(&Prim::Boolean, &["true".into()]), json!(true));
        assert_eq!(coerce(&Prim::Boolean, &["1".into()]), json!("1"));
        assert_eq!(
            coerce(
                &Prim::Array(Box::new(Prim::Integer)),
                &["1".into(), "2".into()]
            ),
            json!([1, 2])
        );
    }
}
