//! The OpenAPI 3.1 document of `/api/v1`, served at `/api/v1/openapi.json`. Written here
//! beside the routes (a test checks that every route is described, and schemathesis checks the
//! running server against it: no 5xx, every described answer matching its schema).

use serde_json::{Value, json};

fn error() -> Value {
    json!({ "$ref": "#/components/schemas/Error" })
}

fn answer(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// The usual error answers plus `ok`.
fn responses(ok: (&str, Value), errors: &[&str]) -> Value {
    let mut r = serde_json::Map::new();
    let (status, body) = ok;
    r.insert(status.to_owned(), body);
    for e in errors {
        let what = match *e {
            "401" => "not logged in, or the session ended",
            "403" => "not allowed for this user",
            "404" => "no such thing, or not visible to this user",
            "409" => "a conflict: a stale version or an action the state does not allow",
            "422" => "a field is missing or invalid (`field` names it)",
            "423" => "the account is locked",
            "429" => "too many failed logins from this address (Retry-After says how long)",
            _ => "error",
        };
        r.insert((*e).to_owned(), answer(what, error()));
    }
    Value::Object(r)
}

fn body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn id_param() -> Value {
    json!([{ "name": "id", "in": "path", "required": true,
             "schema": { "type": "integer", "minimum": 1, "maximum": 9_007_199_254_740_991_i64 } }])
}

fn no_content(description: &str) -> Value {
    json!({ "description": description })
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": properties, "required": required })
}

/// The document.
pub fn document() -> Value {
    // The clinical record's shared shapes: times in ms since the epoch, where each row came from.
    let int = json!({ "type": "integer" });
    let text = json!({ "type": "string" });
    let when = json!({ "type": ["integer", "null"] });
    let provenance = object(
        json!({ "source": { "type": "string" }, "reference": { "type": "string" },
                "received_at": { "type": "integer" } }),
        &["source", "reference", "received_at"],
    );
    let secured = json!([{ "bearer": [] }]);
    let case = json!({ "type": "object", "required": ["id", "version", "state", "history"],
        "properties": { "id": { "type": "integer" }, "version": { "type": "integer" },
            "state": { "type": "string" },
            "history": { "type": "array", "items": { "type": "object",
                "required": ["from", "to", "action", "by", "role", "at"],
                "properties": { "from": { "type": "string" }, "to": { "type": "string" },
                    "action": { "type": "string" }, "by": { "type": "integer" },
                    "role": { "type": "string" }, "at": { "type": "integer" },
                    "why": { "type": ["string", "null"] } } } },
            "patient": { "type": "integer" }, "kind": { "type": "string" },
            "applicant": { "type": "integer" }, "institution": { "type": "integer" },
            "mode": { "type": "string" }, "reason": { "type": "string" },
            "question": { "type": "string" }, "diagnosis": { "type": "string" },
            "urgency": { "type": "string" },
            "studies": { "type": "array", "items": { "type": "string" } },
            "records": { "type": "array", "items": { "type": "string" }, "description": "clinical record items shared, kind:id (encounter, order, lab by analyte code, exam_report, document, diagnosis)" },
            "requested_experts": { "type": "array", "items": { "type": "integer" } },
            "requested_slot": { "type": ["integer", "null"] },
            "experts": { "type": "array", "items": { "type": "integer" } },
            "room": { "type": ["string", "null"] },
            "scheduled_at": { "type": ["integer", "null"] } } });
    let referral = json!({ "type": "object", "required": ["id", "patient", "version", "state", "direction", "history"],
        "properties": {
            "id": { "type": "integer" }, "patient": { "type": "integer" }, "version": { "type": "integer" },
            "state": { "type": "string" }, "direction": { "enum": ["up", "down"] },
            "applicant": { "type": "integer" }, "institution": { "type": "integer" },
            "reason": { "type": "string" }, "diagnosis": { "type": "string" },
            "studies": { "type": "array", "items": { "type": "string" } },
            "records": { "type": "array", "items": { "type": "string" }, "description": "clinical record items shared, kind:id (encounter, order, lab by analyte code, exam_report, document, diagnosis)" },
            "grant_minutes": { "type": "integer" }, "grant_until": { "type": ["integer", "null"] },
            "receiver": { "type": ["array", "null"], "items": { "type": ["integer", "null"] } },
            "proposed": { "type": ["array", "null"], "items": { "type": "integer" } },
            "history": case["properties"]["history"].clone() } });
    let list = json!({ "type": "object", "required": ["items"],
        "properties": { "items": { "type": "array", "items": case.clone() },
                        "offset": { "type": "integer" }, "limit": { "type": "integer" } } });
    let list_params = json!([
        { "name": "state", "in": "query", "schema": { "type": "string" } },
        { "name": "offset", "in": "query", "schema": { "type": "integer", "minimum": 0, "maximum": 1_000_000 } },
        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 200 } }
    ]);
    let if_match = json!({ "name": "If-Match", "in": "header", "required": false,
        "schema": { "type": "string" } });
    let mut action_params = id_param();
    if let Some(a) = action_params.as_array_mut() {
        a.push(if_match);
    }
    let application = object(
        json!({ "reason": { "type": "string" }, "question": { "type": "string" },
                "diagnosis": { "type": "string" }, "speciality": { "type": "string" },
                "urgency": { "enum": ["routine", "urgent", "emergency"] },
                "requested_experts": { "type": "array", "items": { "type": "integer" } },
                "requested_slot": { "type": "integer", "minimum": 0 },
                "studies": { "type": "array", "items": { "type": "string" } },
                "records": { "type": "array", "items": { "type": "string" }, "description": "clinical record items shared, kind:id (encounter, order, lab by analyte code, exam_report, document, diagnosis)" },
                "attachments": { "type": "array", "items": object(json!({
                    "kind": { "enum": ["record", "lab", "study"] }, "reference": { "type": "string" },
                    "title": { "type": "string" } }), &["kind", "reference"]) } }),
        &[],
    );
    let user = object(
        json!({ "id": { "type": "integer" }, "login": { "type": "string" },
                "display_name": { "type": "string" }, "role": { "type": "string" },
                "institution": { "type": "integer" },
                "must_change_password": { "type": "boolean" },
                "must_enroll_totp": { "type": "boolean" }, "totp_enabled": { "type": "boolean" } }),
        &[
            "id",
            "login",
            "role",
            "institution",
            "must_change_password",
            "must_enroll_totp",
        ],
    );
    json!({
        "openapi": "3.1.0",
        "info": { "title": "远程会诊与双向转诊平台 API / Consultation and referral API", "version": env!("CARGO_PKG_VERSION") },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": object(json!({
                    "code": { "type": "string" }, "message": { "type": "string" },
                    "field": { "type": ["string", "null"] }, "current": { "type": "object" } }),
                    &["code", "message", "field"]),
            }
        },
        "security": secured,
        "paths": {
            "/api/v1/auth/login": { "post": {
                "summary": "Log in (the TOTP code when the account has a second factor)",
                "security": [],
                "requestBody": body(object(json!({ "login": { "type": "string" },
                    "password": { "type": "string" }, "totp": { "type": ["string", "null"] } }),
                    &["login", "password"])),
                "responses": responses(("200", answer("a session", object(
                    json!({ "token": { "type": "string" }, "user": user.clone() }), &["token", "user"]))),
                    &["401", "422", "423", "429"]) } },
            "/api/v1/auth/logout": { "post": { "summary": "End this session",
                "responses": responses(("204", no_content("ended")), &["401"]) } },
            "/api/v1/auth/password": { "post": { "summary": "Change the password",
                "requestBody": body(object(json!({ "old_password": { "type": "string" },
                    "new_password": { "type": "string" } }), &["old_password", "new_password"])),
                "responses": responses(("204", no_content("changed")), &["401", "422"]) } },
            "/api/v1/auth/totp/setup": { "post": { "summary": "Start setting up a TOTP second factor",
                "responses": responses(("200", answer("the secret and otpauth URI", object(
                    json!({ "secret": { "type": "string" }, "otpauth_uri": { "type": "string" } }),
                    &["secret", "otpauth_uri"]))), &["401"]) } },
            "/api/v1/auth/totp/confirm": { "post": { "summary": "Confirm the second factor with a code",
                "requestBody": body(object(json!({ "code": { "type": "string" } }), &["code"])),
                "responses": responses(("204", no_content("enabled")), &["401", "422"]) } },
            "/api/v1/token-key": { "get": { "summary": "The public key that verifies the tokens the appliance signs",
                "security": [],
                "responses": responses(("200", answer("the key", object(json!({
                    "public_key": { "type": "string" }, "algorithm": { "const": "Ed25519" } }),
                    &["public_key", "algorithm"]))), &[]) } },
            "/api/v1/me": { "get": { "summary": "The current user",
                "responses": responses(("200", answer("the user", user)), &["401"]) } },
            "/api/v1/patients": { "get": {
                "summary": "Search the patients the user may read by name (part), identity card or record number",
                "parameters": [{ "name": "q", "in": "query", "required": true, "schema": { "type": "string", "minLength": 1, "maxLength": 64 } }],
                "responses": responses(("200", answer("at most 50, newest first", object(json!({
                    "items": { "type": "array", "items": object(json!({
                        "id": { "type": "integer" }, "institution": { "type": "integer" },
                        "institution_name": { "type": "string" }, "name": { "type": "string" },
                        "sex": { "type": "string" }, "birth_date": { "type": "string" },
                        "record_number": { "type": "string" },
                        "id_number_masked": { "type": "string" }, "favourite": { "type": "boolean" } }),
                        &["id", "institution", "institution_name", "name", "sex", "birth_date",
                          "record_number", "id_number_masked", "favourite"]) } }), &["items"]))),
                    &["401", "403", "422"]) },
                "post": { "summary": "Register a patient at the user's institution",
                "requestBody": body(object(json!({ "name": { "type": "string" },
                    "sex": { "enum": ["M", "F", "O", "U"] }, "birth_date": { "type": "string" },
                    "phone": { "type": "string" }, "id_number": { "type": "string" },
                    "record_number": { "type": "string" } }), &["name", "sex", "birth_date"])),
                "responses": responses(("201", answer("created", object(json!({ "id": { "type": "integer" } }), &["id"]))),
                    &["401", "403", "422"]) } },
            "/api/v1/patients/{id}": { "get": { "summary": "A patient the user may read",
                "parameters": id_param(),
                "responses": responses(("200", answer("the patient", object(json!({
                    "id": { "type": "integer" }, "name": { "type": "string" },
                    "institution": { "type": "integer" }, "sex": { "type": "string" },
                    "birth_date": { "type": "string" }, "phone": { "type": "string" },
                    "master": { "type": ["integer", "null"] }, "record_number": { "type": "string" } }),
                    &["id", "name", "institution", "sex", "birth_date", "record_number"]))),
                    &["401", "403", "404"]) } },
            "/api/v1/patients/{id}/studies": { "get": {
                "summary": "The data centre's imaging studies of a patient (by record number as Patient ID, or name and birth date)",
                "parameters": id_param(),
                "responses": responses(("200", answer("studies, newest first", object(json!({
                    "items": { "type": "array", "items": object(json!({
                        "uid": { "type": "string" }, "date": { "type": "string" },
                        "description": { "type": "string" }, "modalities": { "type": "string" },
                        "accession": { "type": "string" }, "series": { "type": "integer" },
                        "instances": { "type": "integer" },
                        "thumbnail": { "type": ["string", "null"] } }),
                        &["uid", "date", "description", "modalities", "series", "instances", "thumbnail"]) } }),
                    &["items"]))), &["401", "403", "404", "503"]) } },
            "/api/v1/patients/{id}/record": { "get": {
                "summary": "A patient's clinical record from the hospital's systems: encounters, orders, lab results, exam reports, documents and diagnoses, each with its provenance (newest first, at most 500 of each)",
                "parameters": id_param(),
                "responses": responses(("200", answer("the record", object(json!({
                    "patient": { "type": "integer" },
                    "merged_into": { "type": ["integer", "null"] },
                    "shared_only": { "type": "boolean", "description": "only what a consultation or referral shares with this user" },
                    "encounters": { "type": "array", "items": object(json!({
                        "id": int, "visit_number": text, "class": text, "location": text,
                        "department": text, "attending": text, "admitted_at": when,
                        "discharged_at": when, "provenance": provenance }),
                        &["id", "visit_number", "class", "location", "department", "attending", "admitted_at", "discharged_at", "provenance"]) },
                    "orders": { "type": "array", "items": object(json!({
                        "id": int, "kind": text, "placer": text, "filler": text, "code": text,
                        "name": text, "status": text, "ordered_at": when, "provider": text,
                        "provenance": provenance }),
                        &["id", "kind", "placer", "filler", "code", "name", "status", "ordered_at", "provider", "provenance"]) },
                    "labs": { "type": "array", "items": object(json!({
                        "id": int, "order": { "type": ["integer", "null"] }, "code": text,
                        "name": text, "value": text, "numeric": { "type": ["number", "null"] },
                        "unit": text, "range": text, "low": { "type": ["number", "null"] },
                        "high": { "type": ["number", "null"] }, "flag": text, "abnormal": text,
                        "status": text, "specimen": text, "observed_at": when,
                        "provenance": provenance }),
                        &["id", "order", "code", "name", "value", "numeric", "unit", "range", "low", "high", "flag", "abnormal", "status", "specimen", "observed_at", "provenance"]) },
                    "exam_reports": { "type": "array", "items": object(json!({
                        "id": int, "order": { "type": ["integer", "null"] }, "kind": text,
                        "code": text, "name": text, "status": text, "text": text,
                        "has_pdf": { "type": "boolean" }, "observed_at": when, "reported_at": when,
                        "provenance": provenance }),
                        &["id", "order", "kind", "code", "name", "status", "text", "has_pdf", "observed_at", "reported_at", "provenance"]) },
                    "documents": { "type": "array", "items": object(json!({
                        "id": int, "kind": text, "number": text, "title": text, "status": text,
                        "mime": text, "time": when, "provenance": provenance }),
                        &["id", "kind", "number", "title", "status", "mime", "time", "provenance"]) },
                    "diagnoses": { "type": "array", "items": object(json!({
                        "id": int, "code": text, "name": text, "system": text, "kind": text,
                        "time": when, "provenance": provenance }),
                        &["id", "code", "name", "system", "kind", "time", "provenance"]) } }),
                    &["patient", "merged_into", "shared_only", "encounters", "orders", "labs", "exam_reports", "documents", "diagnoses"]))),
                    &["401", "404"]) } },
            "/api/v1/patients/{id}/labs/trend": { "get": {
                "summary": "One analyte over time (oldest first) with its reference range; abnormal points flagged (H/L/HH/LL/A)",
                "parameters": [id_param()[0].clone(),
                    { "name": "code", "in": "query", "required": true, "schema": { "type": "string" } },
                    { "name": "from", "in": "query", "schema": { "type": "integer" } },
                    { "name": "to", "in": "query", "schema": { "type": "integer" } }],
                "responses": responses(("200", answer("the trend", object(json!({
                    "code": { "type": "string" }, "name": { "type": "string" },
                    "unit": { "type": "string" },
                    "range": { "oneOf": [{ "type": "null" }, object(json!({
                        "low": { "type": ["number", "null"] }, "high": { "type": ["number", "null"] },
                        "text": { "type": "string" } }), &["low", "high", "text"])] },
                    "points": { "type": "array", "items": object(json!({
                        "time": { "type": ["integer", "null"] }, "value": { "type": "string" },
                        "numeric": { "type": ["number", "null"] }, "abnormal": { "type": "string" },
                        "low": { "type": ["number", "null"] }, "high": { "type": ["number", "null"] } }),
                        &["time", "value", "numeric", "abnormal", "low", "high"]) } }),
                    &["code", "name", "unit", "points"]))), &["401", "404", "422"]) } },
            "/api/v1/patients/{id}/exam-reports/{report}/pdf": { "get": {
                "summary": "An exam or lab report's PDF as the sending system gave it",
                "parameters": [id_param()[0].clone(),
                    { "name": "report", "in": "path", "required": true, "schema": { "type": "integer" } }],
                "responses": responses(("200", json!({ "description": "the PDF", "content": {
                    "application/pdf": { "schema": { "type": "string", "format": "binary" } } } })),
                    &["401", "404"]) } },
            "/api/v1/patients/{id}/documents/{document}": { "get": {
                "summary": "An EMR document's content (text, HTML in a sandbox, or PDF)",
                "parameters": [id_param()[0].clone(),
                    { "name": "document", "in": "path", "required": true, "schema": { "type": "integer" } }],
                "responses": responses(("200", json!({ "description": "the content", "content": {
                    "text/plain": { "schema": { "type": "string" } },
                    "text/html": { "schema": { "type": "string" } },
                    "application/pdf": { "schema": { "type": "string", "format": "binary" } } } })),
                    &["401", "404"]) } },
            "/api/v1/icd10": { "get": { "summary": "ICD-10 diagnoses by code prefix or name (Chinese or English)",
                "parameters": [{ "name": "q", "in": "query", "schema": { "type": "string" } }],
                "responses": responses(("200", answer("at most 20", object(json!({
                    "items": { "type": "array", "items": object(json!({
                        "code": { "type": "string" }, "zh": { "type": "string" }, "en": { "type": "string" } }),
                        &["code", "zh", "en"]) } }), &["items"]))), &["401"]) } },
            "/api/v1/consultations": {
                "post": { "summary": "Start a consultation application (a draft)",
                    "requestBody": body({ let mut a = application.clone();
                        a["properties"]["patient"] = json!({ "type": "integer" });
                        a["properties"]["kind"] = json!({ "enum": ["remote", "mdt", "mobile"] });
                        a["properties"]["mode"] = json!({ "enum": ["appointment", "named"] });
                        a["required"] = json!(["patient", "kind", "mode"]);
                        a }),
                    "responses": responses(("201", answer("the draft", case.clone())), &["401", "403", "422"]) },
                "get": { "summary": "Consultations the user may see", "parameters": list_params.clone(),
                    "responses": responses(("200", answer("a page", list.clone())), &["401", "403", "422"]) } },
            "/api/v1/consultations/{id}": {
                "get": { "summary": "One consultation (ETag: its version)",
                    "parameters": id_param(),
                    "responses": responses(("200", answer("the consultation", case.clone())), &["401", "403", "404"]) },
                "put": { "summary": "Revise the application (the applicant; draft or rejected; If-Match)",
                    "parameters": action_params.clone(),
                    "requestBody": body(application.clone()),
                    "responses": responses(("200", answer("the consultation", case.clone())),
                        &["401", "403", "404", "409", "422"]) } },
            "/api/v1/consultations/{id}/actions": { "post": {
                "summary": "Act on a consultation: submit, qc_pass, qc_reject, schedule, check_in, draft_report, sign, amend, close, cancel",
                "parameters": action_params.clone(),
                "requestBody": body(object(json!({ "action": { "enum": ["submit", "qc_pass",
                    "qc_reject", "schedule", "check_in", "draft_report", "sign", "amend", "close", "cancel"] },
                    "reasons": { "type": "array", "items": { "type": "string" },
                        "description": "qc_reject: what must be fixed (at least one)" },
                    "at": { "type": "integer", "description": "schedule: the start, ms since the epoch" },
                    "experts": { "type": "array", "items": { "type": "integer" },
                        "description": "schedule: the experts' user ids" },
                    "room": { "type": "string", "description": "schedule: the video room's name" },
                    "reason": { "type": "string", "description": "amend, cancel: why" } }),
                    &["action"])),
                "responses": responses(("200", answer("the new state", case.clone())),
                    &["401", "403", "404", "409", "422"]) } },
            "/api/v1/consultations/{id}/view-token": { "post": {
                "summary": "A signed token for imaging's viewer, for the consultation's studies",
                "parameters": id_param(),
                "responses": responses(("200", answer("the token", object(json!({
                    "token": { "type": "string" }, "viewer_url": { "type": "string" },
                    "expires_at": { "type": "integer" } }), &["token", "viewer_url", "expires_at"]))),
                    &["401", "403", "404", "409"]) } },
            "/api/v1/consultations/{id}/room-token": { "post": {
                "summary": "A signed token for the consultation's video room (once scheduled)",
                "parameters": id_param(),
                "responses": responses(("200", answer("the token", object(json!({
                    "token": { "type": "string" }, "room": { "type": "string" },
                    "publish": { "type": "boolean" }, "expires_at": { "type": "integer" },
                    "signalling_url": { "type": "string" }, "room_url": { "type": "string" } }),
                    &["token", "room", "publish", "expires_at", "room_url"]))),
                    &["401", "403", "404", "409"]) } },
            "/api/v1/referrals": {
                "post": { "summary": "Start a referral (a draft)",
                    "requestBody": body(object(json!({ "patient": { "type": "integer" },
                        "direction": { "enum": ["up", "down"] }, "reason": { "type": "string" },
                        "diagnosis": { "type": "string" }, "grant_hours": { "type": "integer" },
                        "studies": { "type": "array", "items": { "type": "string" } },
                        "records": { "type": "array", "items": { "type": "string" }, "description": "clinical record items shared, kind:id (encounter, order, lab by analyte code, exam_report, document, diagnosis)" },
                        "proposed_institution": { "type": "integer" }, "proposed_department": { "type": "integer" } }),
                        &["patient", "direction"])),
                    "responses": responses(("201", answer("the draft", referral.clone())), &["401", "403", "422"]) },
                "get": { "summary": "Referrals the user may see", "parameters": list_params,
                    "responses": responses(("200", answer("a page", json!({ "type": "object", "required": ["items"],
                        "properties": { "items": { "type": "array", "items": referral.clone() },
                            "offset": { "type": "integer" }, "limit": { "type": "integer" } } }))), &["401", "403", "422"]) } },
            "/api/v1/referrals/{id}": { "get": { "summary": "One referral (ETag: its version)",
                "parameters": id_param(),
                "responses": responses(("200", answer("the referral", referral.clone())), &["401", "403", "404"]) } },
            "/api/v1/referrals/{id}/actions": { "post": {
                "summary": "Act on a referral: submit, qc_pass, qc_reject, assign, accept, refuse, arrive, close, cancel",
                "parameters": action_params,
                "requestBody": body(object(json!({ "action": { "enum": ["submit", "qc_pass",
                    "qc_reject", "assign", "accept", "refuse", "arrive", "close", "cancel"] },
                    "reason": { "type": "string" }, "feedback": { "type": "string" },
                    "institution": { "type": "integer" }, "department": { "type": "integer" },
                    "doctor": { "type": ["integer", "null"] } }),
                    &["action"])),
                "responses": responses(("200", answer("the new state", referral)),
                    &["401", "403", "404", "409", "422"]) } },
            "/api/v1/referrals/{id}/view-token": { "post": {
                "summary": "A signed viewer token for the referral's shared studies (the receiving side: while the grant lasts)",
                "parameters": id_param(),
                "responses": responses(("200", answer("the token", object(json!({
                    "token": { "type": "string" }, "viewer_url": { "type": "string" },
                    "expires_at": { "type": "integer" } }), &["token", "viewer_url", "expires_at"]))),
                    &["401", "403", "404", "409"]) } },
            "/api/v1/notifications": { "get": { "summary": "Unread in-app notifications",
                "responses": responses(("200", answer("unread", object(json!({
                    "unread": { "type": "array", "items": object(json!({
                        "id": { "type": "integer" }, "event": { "type": "string" },
                        "object": { "type": "string" }, "message": { "type": "string" },
                        "at": { "type": "integer" } }), &["id", "event", "object", "message", "at"]) } }),
                    &["unread"]))), &["401"]) } },
            "/api/v1/consultations/{id}/focus/ws": { "get": {
                "summary": "A WebSocket sharing the consultation room's focus: the current one first, then each change; its experts, applicant and the centre send {panel, detail}",
                "security": [],
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1 } },
                               { "name": "token", "in": "query", "required": true, "schema": { "type": "string" } }],
                "responses": responses(("101", no_content("switching to the WebSocket protocol")), &["401", "404"]) } },
            "/api/v1/notifications/ws": { "get": {
                "summary": "A WebSocket pushing the unread list, then each new notification",
                "security": [],
                "parameters": [{ "name": "token", "in": "query", "required": true, "schema": { "type": "string" } }],
                "responses": responses(("101", no_content("switching to the WebSocket protocol")), &["401"]) } },
            "/api/v1/notifications/{id}/read": { "post": { "summary": "Mark a notification read",
                "parameters": id_param(),
                "responses": responses(("204", no_content("read")), &["401", "404"]) } },
            "/api/v1/users": {
                "post": { "summary": "Create an account (security administrator; institution administrator for its own)",
                    "requestBody": body(object(json!({ "login": { "type": "string" },
                        "display_name": { "type": "string" }, "role": { "type": "string" },
                        "institution": { "type": "integer" }, "phone": { "type": "string" } }),
                        &["login", "display_name", "role", "institution"])),
                    "responses": responses(("201", answer("created, with a one-time password", object(json!({
                        "id": { "type": "integer" }, "one_time_password": { "type": "string" } }),
                        &["id", "one_time_password"]))), &["401", "403", "409", "422"]) },
                "get": { "summary": "Accounts an administrator manages",
                    "parameters": [{ "name": "institution", "in": "query", "schema": { "type": "integer" } }],
                    "responses": responses(("200", answer("accounts", object(json!({
                        "items": { "type": "array" } }), &["items"]))), &["401", "403"]) } },
            "/api/v1/users/{id}/unlock": { "post": { "summary": "Unlock an account",
                "parameters": id_param(),
                "responses": responses(("204", no_content("unlocked")), &["401", "403", "404", "422"]) } },
            "/api/v1/users/{id}/reset-password": { "post": { "summary": "Give an account a new one-time password",
                "parameters": id_param(),
                "responses": responses(("200", answer("the one-time password", object(json!({
                    "one_time_password": { "type": "string" } }), &["one_time_password"]))),
                    &["401", "403", "404", "422"]) } },
            "/api/v1/users/{id}/disable": { "post": { "summary": "Disable an account and end its sessions",
                "parameters": id_param(),
                "responses": responses(("204", no_content("disabled")), &["401", "403", "404", "422"]) } },
            "/api/v1/service-accounts": {
                "post": { "summary": "Create a service account for DICOMweb (security administrator); its bearer token is shown once",
                    "requestBody": body(object(json!({
                        "name": { "type": "string", "pattern": "^[A-Za-z0-9._-]{2,64}$" },
                        "description": { "type": "string", "maxLength": 200 },
                        "write": { "type": "boolean" },
                        "days": { "type": "integer", "minimum": 1, "maximum": 730 },
                        "institutions": { "type": "array", "items": { "type": "integer" },
                            "description": "institution ids whose studies (by Institution Name) it reads; empty: all; not with write" } }),
                        &["name", "days"])),
                    "responses": responses(("201", answer("the account and its token", object(json!({
                        "id": { "type": "integer" }, "name": { "type": "string" }, "write": { "type": "boolean" },
                        "expires_at": { "type": "integer" }, "token": { "type": "string" },
                        "dicomweb_url": { "type": "string" },
                        "institutions": { "type": "array", "items": { "type": "integer" } },
                        "institution_names": { "type": "array", "items": { "type": "string" } } }),
                        &["id", "name", "write", "expires_at", "token", "dicomweb_url"]))), &["401", "403", "409", "422"]) },
                "get": { "summary": "Service accounts (security administrator)",
                    "responses": responses(("200", answer("the accounts", object(json!({
                        "items": { "type": "array", "items": object(json!({
                            "id": { "type": "integer" }, "name": { "type": "string" },
                            "description": { "type": "string" }, "write": { "type": "boolean" },
                            "created_by": { "type": "string" }, "created_at": { "type": "integer" },
                            "expires_at": { "type": "integer" }, "revoked_at": { "type": ["integer", "null"] },
                            "state": { "type": "string", "enum": ["active", "expired", "revoked"] },
                            "institutions": { "type": "array", "items": { "type": "integer" } } }),
                            &["id", "name", "write", "state", "expires_at"]) } }), &["items"]))), &["401", "403"]) } },
            "/api/v1/service-accounts/{id}/revoke": { "post": { "summary": "Revoke a service account's token (imaging refuses it from the next request)",
                "parameters": id_param(),
                "responses": responses(("204", no_content("revoked")), &["401", "403", "404", "422"]) } },
            "/api/v1/audit": { "get": { "summary": "Audit records (audit administrator)",
                "parameters": [
                    { "name": "user", "in": "query", "schema": { "type": "integer" } },
                    { "name": "action", "in": "query", "schema": { "type": "string" } },
                    { "name": "target", "in": "query", "schema": { "type": "string" } },
                    { "name": "after", "in": "query", "schema": { "type": "integer" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }],
                "responses": responses(("200", answer("records", object(json!({
                    "items": { "type": "array" } }), &["items"]))), &["401", "403", "422"]) } },
            "/api/v1/audit/verify": { "get": { "summary": "Verify the audit chain (audit administrator)",
                "responses": responses(("200", answer("the result", object(json!({
                    "records": { "type": "integer" }, "intact": { "type": "boolean" },
                    "problems": { "type": "array", "items": { "type": "string" } } }),
                    &["records", "intact", "problems"]))), &["401", "403"]) } },
            "/api/v1/report-templates": {
                "get": { "summary": "Report templates and their sections (built-in and configured)",
                    "responses": responses(("200", answer("the templates", object(json!({
                        "templates": { "type": "array", "items": object(json!({
                            "key": { "type": "string" }, "title": { "type": "string" },
                            "sections": { "type": "array", "items": object(json!({ "key": { "type": "string" },
                                "title": { "type": "string" } }), &["key", "title"]) } }), &["key", "title", "sections"]) } }),
                        &["templates"]))), &["401", "403"]) },
                "post": { "summary": "Configure a template (the consultation centre or the system administrator)",
                    "requestBody": body(object(json!({ "key": { "type": "string" }, "title": { "type": "string" },
                        "sections": { "type": "array", "items": object(json!({ "key": { "type": "string" },
                            "title": { "type": "string" } }), &["key", "title"]) } }), &["key", "title", "sections"])),
                    "responses": responses(("201", no_content("created")), &["401", "403", "409", "422"]) } },
            "/api/v1/me/signature": { "put": { "summary": "Upload the expert's signature image (PNG or JPEG, at most 256 KiB and 2000x1000)",
                "requestBody": { "required": true, "content": {
                    "image/png": { "schema": { "type": "string", "format": "binary" } },
                    "image/jpeg": { "schema": { "type": "string", "format": "binary" } } } },
                "responses": responses(("204", no_content("stored")), &["401", "403", "422"]) } },
            "/api/v1/consultations/{id}/report": {
                "put": { "summary": "Save the report draft (sections; an MDT expert's contribution; If-Match)",
                    "parameters": action_params.clone(),
                    "requestBody": body(object(json!({ "template": { "type": "string" },
                        "sections": { "type": "object", "additionalProperties": { "type": "string" } },
                        "contribution": { "type": ["string", "null"] } }), &["template"])),
                    "responses": responses(("200", answer("the consultation", json!({ "type": "object" }))),
                        &["401", "403", "404", "409", "422"]) },
                "get": { "summary": "A report version (default: the latest saved)",
                    "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1 } },
                                   { "name": "version", "in": "query", "schema": { "type": "integer", "minimum": 1 } }],
                    "responses": responses(("200", answer("the report", object(json!({
                        "consultation": { "type": "integer" }, "version": { "type": "integer" },
                        "template": { "type": "string" },
                        "sections": { "type": "object", "additionalProperties": { "type": "string" } },
                        "contributions": { "type": "object", "additionalProperties": { "type": "string" } },
                        "signed": { "type": ["object", "null"], "properties": {
                            "by": { "type": "integer" }, "at": { "type": "integer" },
                            "content_sha256": { "type": "string" }, "signature_sha256": { "type": "string" },
                            "seal_sha256": { "type": "string" } } },
                        "versions": { "type": "array", "items": { "type": "integer" } },
                        "final": { "type": "boolean" } }),
                        &["consultation", "version", "template", "sections", "contributions", "signed", "versions", "final"]))),
                        &["401", "403", "404"]) } },
            "/api/v1/consultations/{id}/report/sign": { "post": {
                "summary": "Sign the current report version: binds the signature image, the content's SHA-256 and the server time (If-Match)",
                "parameters": action_params.clone(),
                "responses": responses(("200", answer("the consultation", json!({ "type": "object" }))),
                    &["401", "403", "404", "409", "422"]) } },
            "/api/v1/consultations/{id}/report/verify": { "get": {
                "summary": "Recompute a signed report's hashes",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1 } },
                               { "name": "version", "in": "query", "schema": { "type": "integer", "minimum": 1 } }],
                "responses": responses(("200", answer("the result", object(json!({
                    "intact": { "type": "boolean" }, "content_matches": { "type": "boolean" },
                    "seal_matches": { "type": "boolean" }, "signature_image_current": { "type": "boolean" },
                    "seal_alg": { "type": "string", "enum": ["sha256", "sm3"] },
                    "sm2_signature_valid": { "type": ["boolean", "null"],
                        "description": "null for reports signed before SM2 signatures existed" } }),
                    &["intact"]))), &["401", "403", "404", "409"]) } },
            "/api/v1/consultations/{id}/report/signed.zip": { "get": {
                "summary": "A signed report version as a bundle anyone can verify (content, SM2-signed statement, certificate chain; VERIFY.txt gives the openssl commands)",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1 } },
                               { "name": "version", "in": "query", "schema": { "type": "integer", "minimum": 1 } }],
                "responses": responses(("200", json!({ "description": "the zip", "content": {
                    "application/zip": { "schema": { "type": "string", "format": "binary" } } } })),
                    &["401", "403", "404", "409"]) } },
            "/api/v1/consultations/{id}/report.pdf": { "get": {
                "summary": "A report version as PDF (Chinese text; the signature block when signed); a page opens it with ?ticket=",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1 } },
                               { "name": "version", "in": "query", "schema": { "type": "integer", "minimum": 1 } },
                               { "name": "ticket", "in": "query", "schema": { "type": "string" } }],
                "responses": responses(("200", json!({ "description": "the PDF", "content": {
                    "application/pdf": { "schema": { "type": "string", "format": "binary" } } } })),
                    &["401", "403", "404"]) } },
            "/api/v1/referrals/{id}/admission-slip.pdf": { "get": {
                "summary": "The admission slip of an accepted referral, as PDF; a page opens it with ?ticket=",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1 } },
                               { "name": "ticket", "in": "query", "schema": { "type": "string" } }],
                "responses": responses(("200", json!({ "description": "the PDF", "content": {
                    "application/pdf": { "schema": { "type": "string", "format": "binary" } } } })),
                    &["401", "403", "404", "409"]) } },
            "/api/v1/institutions": { "get": { "summary": "The alliance's institutions (each with its parent)",
                "responses": responses(("200", answer("institutions", object(json!({
                    "items": { "type": "array", "items": object(json!({
                        "id": { "type": "integer" }, "name": { "type": "string" }, "kind": { "type": "string" },
                        "parent": { "type": ["integer", "null"] } }), &["id", "name", "kind", "parent"]) } }),
                    &["items"]))), &["401", "403"]) } },
            "/api/v1/institutions/{id}/departments": {
                "get": { "summary": "An institution's departments", "parameters": id_param(),
                    "responses": responses(("200", answer("departments", object(json!({
                        "items": { "type": "array", "items": object(json!({
                            "id": { "type": "integer" }, "name": { "type": "string" } }), &["id", "name"]) } }),
                        &["items"]))), &["401", "403"]) },
                "post": { "summary": "Add a department (the institution's administrator)", "parameters": id_param(),
                    "requestBody": body(object(json!({ "name": { "type": "string" } }), &["name"])),
                    "responses": responses(("201", answer("created", object(json!({
                        "id": { "type": "integer" } }), &["id"]))), &["401", "403", "409", "422"]) } },
            "/api/v1/experts": { "get": { "summary": "Experts, by specialty or department",
                "parameters": [{ "name": "specialty", "in": "query", "schema": { "type": "string" } },
                               { "name": "department", "in": "query", "schema": { "type": "integer" } }],
                "responses": responses(("200", answer("experts", object(json!({
                    "items": { "type": "array", "items": object(json!({
                        "id": { "type": "integer" }, "name": { "type": "string" },
                        "institution": { "type": "integer" }, "department": { "type": ["integer", "null"] },
                        "department_name": { "type": "string" },
                        "title": { "type": "string" }, "profile": { "type": "string" },
                        "specialties": { "type": "array", "items": { "type": "string" } } }),
                        &["id", "name", "institution", "department", "department_name", "title",
                          "profile", "specialties"]) } }),
                    &["items"]))), &["401", "403"]) } },
            "/api/v1/experts/{id}": { "put": { "summary": "Set an expert's department, title, specialties and profile",
                "parameters": id_param(),
                "requestBody": body(object(json!({ "department": { "type": ["integer", "null"] },
                    "title": { "type": "string" }, "profile": { "type": "string" },
                    "specialties": { "type": "array", "items": { "type": "string" } } }), &[])),
                "responses": responses(("204", no_content("saved")), &["401", "403", "404", "422"]) } },
            "/api/v1/experts/{id}/slots": {
                "get": { "summary": "An expert's coming slots",
                    "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1 } },
                                   { "name": "free", "in": "query", "schema": { "type": "boolean" } }],
                    "responses": responses(("200", answer("slots", object(json!({
                        "items": { "type": "array", "items": object(json!({
                            "id": { "type": "integer" }, "starts_at": { "type": "integer" },
                            "minutes": { "type": "integer" }, "booked": { "type": "boolean" } }),
                            &["id", "starts_at", "minutes", "booked"]) } }), &["items"]))), &["401", "403"]) },
                "post": { "summary": "Publish bookable slots (the expert or the centre)", "parameters": id_param(),
                    "requestBody": body(object(json!({ "starts_at": { "type": "integer" },
                        "minutes": { "type": "integer" }, "count": { "type": "integer" } }),
                        &["starts_at", "minutes"])),
                    "responses": responses(("201", answer("created", object(json!({
                        "ids": { "type": "array", "items": { "type": "integer" } } }), &["ids"]))),
                        &["401", "403", "404", "409", "422"]) } },
            "/api/v1/tickets": { "post": {
                "summary": "A one-minute link to a document (PDF) for this session, for a page to open in a new tab",
                "requestBody": body(object(json!({ "path": { "type": "string" } }), &["path"])),
                "responses": responses(("200", answer("the ticket", object(json!({
                    "ticket": { "type": "string" }, "url": { "type": "string" },
                    "expires_at": { "type": "integer" } }), &["ticket", "url", "expires_at"]))),
                    &["401", "403", "422"]) } },
            "/api/v1/consultations/{id}/schedule-preview": { "post": {
                "summary": "What scheduling would do, changing nothing (the centre): conflicts within an hour and every notice, worded as sent",
                "parameters": id_param(),
                "requestBody": body(object(json!({ "at": { "type": "integer" },
                    "experts": { "type": "array", "items": { "type": "integer" } }, "room": { "type": "string" } }),
                    &["at", "experts", "room"])),
                "responses": responses(("200", answer("the preview", object(json!({
                    "conflicts": { "type": "array", "items": object(json!({
                        "consultation": { "type": "integer" }, "why": { "enum": ["expert", "room"] },
                        "expert": { "type": ["integer", "null"] }, "expert_name": { "type": "string" },
                        "at": { "type": ["integer", "null"] }, "room": { "type": ["string", "null"] } }),
                        &["consultation", "why", "expert", "expert_name", "at", "room"]) },
                    "messages": { "type": "array", "items": object(json!({
                        "to": { "type": "string" }, "user": { "type": ["integer", "null"] },
                        "event": { "type": "string" }, "in_app": { "type": ["string", "null"] },
                        "sms": { "type": ["string", "null"] }, "phone": { "type": "string" } }),
                        &["to", "user", "event", "in_app", "sms", "phone"]) },
                    "sms_gateway": { "type": "boolean" } }), &["conflicts", "messages", "sms_gateway"]))),
                    &["401", "403", "404", "409", "422"]) } },
            "/api/v1/consultations/{id}/book": { "post": {
                "summary": "Book an expert's free slot for an appointment-mode consultation (schedules it)",
                "parameters": id_param(),
                "requestBody": body(object(json!({ "slot": { "type": "integer" }, "room": { "type": "string" } }),
                    &["slot", "room"])),
                "responses": responses(("200", answer("the consultation", json!({ "type": "object" }))),
                    &["401", "403", "404", "409", "422"]) } },
            "/api/v1/patients/{id}/linked": { "get": {
                "summary": "The same person's records at other institutions that the user may read",
                "parameters": id_param(),
                "responses": responses(("200", answer("linked records", object(json!({
                    "items": { "type": "array" } }), &["items"]))), &["401", "403", "404"]) } },
            "/api/v1/me/favourites": { "get": { "summary": "Favourite patients",
                "responses": responses(("200", answer("favourites", object(json!({
                    "items": { "type": "array", "items": object(json!({
                        "id": { "type": "integer" }, "name": { "type": "string" } }), &["id", "name"]) } }),
                    &["items"]))), &["401", "403"]) } },
            "/api/v1/me/favourites/{patient}": {
                "put": { "summary": "Add a favourite patient",
                    "parameters": [{ "name": "patient", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1 } }],
                    "responses": responses(("204", no_content("added")), &["401", "403", "404"]) },
                "delete": { "summary": "Remove a favourite patient",
                    "parameters": [{ "name": "patient", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1 } }],
                    "responses": responses(("204", no_content("removed")), &["401", "403"]) } },
            "/api/v1/sfu/admin-token": { "post": {
                "summary": "A token for the SFU's admin API (system administrator)",
                "responses": responses(("200", answer("the token", object(json!({
                    "token": { "type": "string" }, "expires_at": { "type": "integer" },
                    "admin_url": { "type": "string" } }), &["token", "expires_at"]))), &["401", "403"]) } },
            "/api/v1/statistics": { "get": { "summary": "Counts (JSON, CSV or XLSX)",
                "parameters": [
                    { "name": "kind", "in": "query", "required": true, "schema": { "enum": ["consultation", "referral"] } },
                    { "name": "by", "in": "query", "required": true, "schema": { "type": "string" } },
                    { "name": "from", "in": "query", "required": true, "schema": { "type": "string" } },
                    { "name": "to", "in": "query", "required": true, "schema": { "type": "string" } },
                    { "name": "format", "in": "query", "schema": { "enum": ["json", "csv", "xlsx"] } }],
                "responses": responses(("200", { let mut a = answer("the counts", object(json!({
                        "rows": { "type": "array", "items": object(json!({
                            "key": { "type": "array", "items": { "type": "string" } },
                            "count": { "type": "integer" } }), &["key", "count"]) },
                        "by": { "type": "array", "items": { "type": "string" } },
                        "total": { "type": "integer" } }), &["rows", "total"]));
                    a["content"]["text/csv"] = json!({ "schema": { "type": "string" } });
                    a["content"]["application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"] =
                        json!({ "schema": { "type": "string", "format": "binary" } });
                    a }), &["401", "403", "422"]) } },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route the API serves is described, and nothing else.
    #[test]
    fn every_route_is_described() {
        let doc = document();
        let mut described: Vec<String> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                described.push(format!("{} {path}", method.to_uppercase()));
            }
        }
        described.sort();
        let mut served: Vec<String> = crate::api::ROUTES.iter().map(|r| (*r).to_owned()).collect();
        served.sort();
        assert_eq!(described, served);
    }

    /// The web apps generate their typed client from a copy of the document
    /// (`appliance/web/openapi.json`; `npm run check:api` holds the generated types to it):
    /// the copy must be the document. `APPLIANCE_UPDATE_OPENAPI=1` rewrites it.
    #[test]
    fn the_web_apps_copy_is_the_document() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/openapi.json");
        let want = format!("{:#}\n", document());
        if std::env::var_os("APPLIANCE_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &want).expect("write web/openapi.json");
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "appliance/web/openapi.json differs from the document: run \
             `APPLIANCE_UPDATE_OPENAPI=1 cargo test -p appliance --lib openapi`, then \
             `npm run gen:api` in appliance/web"
        );
    }
}
