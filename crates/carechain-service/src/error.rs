//! The service's errors: what went wrong, in domain terms. The HTTP status and the
//! OperationOutcome are chosen once, at the edge (`carechain-server`), from [`ErrorKind`].

use serde_json::{Value, json};

use crate::auth::AuthError;
use carechain_records::{LinkError, RecordError};

/// What kind of failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The resource does not conform to FHIR R4 (the issues name the elements).
    Invalid,
    /// The request body is not a usable structure (not JSON, not a Bundle, …).
    Structure,
    /// The request is not usable as given.
    BadRequest,
    /// Something the FHIR API has that this server does not support.
    NotSupported,
    /// The resource type is unknown.
    UnknownType,
    /// No such resource or version.
    NotFound,
    /// The resource was deleted or erased.
    Gone,
    /// Access refused (and audited).
    Forbidden,
    /// No valid credentials.
    Unauthenticated,
    /// `If-Match` names another version than the current one.
    VersionConflict,
    /// A conditional interaction matched more than one resource, or a duplicate.
    Duplicate,
    /// A conditional update or delete matched more than one resource.
    MultipleMatches,
    /// Too large or too costly (entries, bytes).
    TooCostly,
    /// The state of things conflicts with the request (a link that exists already).
    Conflict,
    /// Too many at once: try again later.
    Busy,
    /// The node failed (storage, ledger); details are in its log, never in the answer.
    Internal,
}

impl ErrorKind {
    /// The OperationOutcome `issue.code` (FHIR's IssueType).
    pub fn issue_code(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "processing",
            ErrorKind::Structure => "structure",
            ErrorKind::BadRequest => "invalid",
            ErrorKind::NotSupported | ErrorKind::UnknownType => "not-supported",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Gone => "deleted",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Unauthenticated => "login",
            ErrorKind::VersionConflict | ErrorKind::Conflict => "conflict",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::MultipleMatches => "multiple-matches",
            ErrorKind::TooCostly => "too-costly",
            ErrorKind::Busy => "transient",
            ErrorKind::Internal => "exception",
        }
    }
}

/// A failure of a service call: its kind, a message (never health data or keys), validation
/// issues (element path, message), and the underlying error when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Diagnostics (never health data).
    pub message: String,
    /// Validation issues, if any (`expression`, `diagnostics`).
    pub issues: Vec<(String, String)>,
    /// The cause (storage, vault, ledger), for the log.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ServiceError {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ServiceError {
        ServiceError {
            kind,
            message: message.into(),
            issues: vec![],
            source: None,
        }
    }

    /// `ErrorKind::BadRequest`.
    pub fn bad(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::BadRequest, message)
    }

    /// `ErrorKind::NotSupported`.
    pub fn unsupported(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::NotSupported, message)
    }

    /// `ErrorKind::Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::Forbidden, message)
    }

    /// `ErrorKind::Internal`, keeping the cause (logged, never answered).
    pub fn internal(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ServiceError {
        ServiceError {
            source: Some(Box::new(source)),
            ..ServiceError::new(ErrorKind::Internal, message)
        }
    }

    /// The OperationOutcome `issue.code`.
    pub fn code(&self) -> &'static str {
        self.kind.issue_code()
    }

    /// The FHIR OperationOutcome for this error.
    pub fn outcome(&self) -> Value {
        let code = self.code();
        let mut issues: Vec<Value> = self
            .issues
            .iter()
            .map(|(path, msg)| json!({"severity": "error", "code": code, "diagnostics": msg, "expression": [path]}))
            .collect();
        if issues.is_empty() {
            let message = if self.kind == ErrorKind::Internal {
                "internal error"
            } else {
                self.message.as_str()
            };
            issues.push(json!({"severity": "error", "code": code, "diagnostics": message}));
        }
        json!({"resourceType": "OperationOutcome", "issue": issues})
    }
}

impl From<RecordError> for ServiceError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Invalid(issues) => ServiceError {
                issues: issues.into_iter().map(|i| (i.path, i.message)).collect(),
                ..ServiceError::new(ErrorKind::Invalid, "resource does not conform to FHIR R4")
            },
            RecordError::BadRequest(m) => ServiceError::bad(m),
            RecordError::NotFound(m) => {
                ServiceError::new(ErrorKind::NotFound, format!("{m} not found"))
            }
            RecordError::Deleted(m) => {
                ServiceError::new(ErrorKind::Gone, format!("{m} was deleted"))
            }
            RecordError::Erased(m) => ServiceError::new(ErrorKind::Gone, format!("{m} was erased")),
            RecordError::VersionConflict { current } => ServiceError::new(
                ErrorKind::VersionConflict,
                format!("version conflict: current version is {current}"),
            ),
            other => {
                tracing::error!(error = %other, "record store failure");
                ServiceError::internal("record store failure", other)
            }
        }
    }
}

impl From<AuthError> for ServiceError {
    fn from(e: AuthError) -> Self {
        let kind = match e {
            AuthError::Busy => ErrorKind::Busy,
            AuthError::BadScope(_) => ErrorKind::BadRequest,
            _ => ErrorKind::Unauthenticated,
        };
        ServiceError::new(kind, e.to_string())
    }
}

impl From<LinkError> for ServiceError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Store(e) => e.into(),
            LinkError::IdentityLinked | LinkError::PatientLinked => {
                ServiceError::new(ErrorKind::Conflict, e.to_string())
            }
            LinkError::UnknownCode | LinkError::Expired | LinkError::WrongPatient => {
                ServiceError::forbidden(e.to_string())
            }
        }
    }
}

impl ErrorKind {
    /// The HTTP status that stands for this kind in FHIR: a Bundle entry's `response.status`
    /// says it, and the server answers with it. Defined here once, for both.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 422,
            ErrorKind::Structure | ErrorKind::BadRequest | ErrorKind::NotSupported => 400,
            ErrorKind::UnknownType | ErrorKind::NotFound => 404,
            ErrorKind::Gone => 410,
            ErrorKind::Forbidden => 403,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::VersionConflict | ErrorKind::Duplicate | ErrorKind::MultipleMatches => 412,
            ErrorKind::TooCostly => 413,
            ErrorKind::Conflict => 409,
            ErrorKind::Busy => 503,
            ErrorKind::Internal => 500,
        }
    }
}

/// A Bundle entry's `response.status` for a failure of `kind`.
pub(crate) fn status_line(kind: ErrorKind) -> String {
    kind.http_status().to_string()
}
