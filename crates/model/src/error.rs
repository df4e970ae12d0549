//! NGSI-LD errors as ProblemDetails (IETF RFC 7807 with the error type URIs of ETSI GS CIM 009 §5.5.2).
//!
//! Every failure a client can cause ends up as an [`NgsiError`]; the HTTP layer turns it into a
//! `application/json` ProblemDetails body with the status code of its [`ErrorKind`].

use serde_json::{Value, json};
use std::fmt;

/// The error types of ETSI GS CIM 009 V1.8.1 table 5.5.2-1 (plus the HTTP-level ones the binding needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidRequest,
    BadRequestData,
    AlreadyExists,
    OperationNotSupported,
    ResourceNotFound,
    InternalError,
    TooComplexQuery,
    TooManyResults,
    LdContextNotAvailable,
    NoMultiTenantSupport,
    NonexistentTenant,
    NotAcceptable,
    UnsupportedMediaType,
    PayloadTooLarge,
    LengthRequired,
    MethodNotAllowed,
    Conflict,
    Gone,
    /// A request that would be forwarded to context sources it already passed (§4.3.6.4).
    LoopDetected,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest | Self::BadRequestData => 400,
            Self::AlreadyExists | Self::Conflict => 409,
            Self::OperationNotSupported => 422,
            Self::ResourceNotFound | Self::NonexistentTenant => 404,
            Self::InternalError => 500,
            Self::TooComplexQuery | Self::TooManyResults => 403,
            // 504 since V1.8.1 (503 before).
            Self::LdContextNotAvailable => 504,
            Self::NoMultiTenantSupport => 501,
            Self::NotAcceptable => 406,
            Self::UnsupportedMediaType => 415,
            Self::PayloadTooLarge => 413,
            Self::LengthRequired => 411,
            Self::MethodNotAllowed => 405,
            Self::Gone => 410,
            Self::LoopDetected => 508,
        }
    }

    pub fn type_uri(self) -> &'static str {
        match self {
            Self::InvalidRequest => "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest",
            Self::BadRequestData => "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
            Self::AlreadyExists => "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists",
            Self::OperationNotSupported => "https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported",
            Self::ResourceNotFound => "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound",
            Self::InternalError => "https://uri.etsi.org/ngsi-ld/errors/InternalError",
            Self::TooComplexQuery => "https://uri.etsi.org/ngsi-ld/errors/TooComplexQuery",
            Self::TooManyResults => "https://uri.etsi.org/ngsi-ld/errors/TooManyResults",
            Self::LdContextNotAvailable => "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable",
            Self::NoMultiTenantSupport => "https://uri.etsi.org/ngsi-ld/errors/NoMultiTenantSupport",
            Self::NonexistentTenant => "https://uri.etsi.org/ngsi-ld/errors/NonexistentTenant",
            Self::NotAcceptable => "https://uri.etsi.org/ngsi-ld/errors/NotAcceptable",
            Self::UnsupportedMediaType => "https://uri.etsi.org/ngsi-ld/errors/UnsupportedMediaType",
            Self::PayloadTooLarge => "https://uri.etsi.org/ngsi-ld/errors/PayloadTooLarge",
            Self::LengthRequired => "https://uri.etsi.org/ngsi-ld/errors/LengthRequired",
            Self::MethodNotAllowed => "https://uri.etsi.org/ngsi-ld/errors/MethodNotAllowed",
            Self::Conflict => "https://uri.etsi.org/ngsi-ld/errors/Conflict",
            Self::Gone => "https://uri.etsi.org/ngsi-ld/errors/Gone",
            Self::LoopDetected => "https://uri.etsi.org/ngsi-ld/errors/LoopDetected",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::InvalidRequest => {
                "The request associated to the operation is syntactically invalid or includes wrong content"
            }
            Self::BadRequestData => {
                "The request includes input data which does not meet the requirements of the operation"
            }
            Self::AlreadyExists => "The referred element already exists",
            Self::OperationNotSupported => "The operation is not supported",
            Self::ResourceNotFound => "The referred resource has not been found",
            Self::InternalError => "There has been an error during the operation execution",
            Self::TooComplexQuery => "The query is too complex and cannot be resolved",
            Self::TooManyResults => "The query involves too many results and cannot be resolved",
            Self::LdContextNotAvailable => "A remote JSON-LD @context referenced in a request cannot be retrieved",
            Self::NoMultiTenantSupport => "The broker does not support multi-tenancy",
            Self::NonexistentTenant => "The addressed tenant does not exist",
            Self::NotAcceptable => "None of the media types in the Accept header can be served",
            Self::UnsupportedMediaType => "The Content-Type of the request is not supported",
            Self::PayloadTooLarge => "The request body is larger than the configured limit",
            Self::LengthRequired => "The request has a body but no Content-Length",
            Self::MethodNotAllowed => "The HTTP method is not allowed on this resource",
            Self::Conflict => "The request conflicts with the current state of the resource",
            Self::Gone => "The resource is no longer available",
            Self::LoopDetected => "The request would loop between context brokers",
        }
    }
}

/// A client-visible failure: kind (type URI and status), a human detail saying what to fix.
#[derive(Debug, Clone, PartialEq)]
pub struct NgsiError {
    pub kind: ErrorKind,
    pub detail: String,
}

pub type Result<T, E = NgsiError> = std::result::Result<T, E>;

impl NgsiError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into() }
    }
    pub fn bad_data(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequestData, detail)
    }
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, detail)
    }
    pub fn already_exists(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, detail)
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InternalError, detail)
    }
    pub fn not_supported(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::OperationNotSupported, detail)
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The ProblemDetails body.
    pub fn to_problem_details(&self) -> Value {
        json!({
            "type": self.kind.type_uri(),
            "title": self.kind.title(),
            "status": self.status(),
            "detail": self.detail,
        })
    }
}

impl fmt::Display for NgsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for NgsiError {}
