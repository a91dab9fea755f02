//! Paths and environment values in JSON output, losslessly: a value that is valid UTF-8
//! is a JSON string; one that is not (Linux paths are bytes) is an object
//! `{"bytes_hex": "<its bytes in lowercase hex>"}`, which a reader tells apart by its
//! type (README, "JSON output").

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use serde::Serializer;
use serde::ser::SerializeMap;

/// `value` as pretty JSON and a newline. Values that reach serde as plain paths (rather
/// than through [`os`]) and are not UTF-8 make this fail with a message naming the fix,
/// never a panic.
pub fn pretty(value: &impl serde::Serialize) -> Result<String, String> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| {
        format!("cannot print JSON: {e} (a path that is not UTF-8?); use the text output")
    })?;
    text.push('\n');
    Ok(text)
}

/// One value: a string, or `{"bytes_hex": ...}`.
pub fn os<T: AsRef<OsStr> + ?Sized, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    let value = value.as_ref();
    match value.to_str() {
        Some(text) => s.serialize_str(text),
        None => {
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry("bytes_hex", &crate::fs::digest::hex(value.as_bytes()))?;
            map.end()
        }
    }
}

/// An optional value: `null`, or as [`os`].
pub fn opt_os<T: AsRef<OsStr>, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => os(value, s),
        None => s.serialize_none(),
    }
}

/// A list of values, each as [`os`].
pub fn vec_os<T: AsRef<OsStr>, S: Serializer>(values: &[T], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(values.len()))?;
    for value in values {
        seq.serialize_element(&Json(value.as_ref()))?;
    }
    seq.end()
}

/// A value serialized as [`os`], for use inside other serializers.
pub struct Json<'a>(pub &'a OsStr);

impl serde::Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        os(self.0, s)
    }
}

/// A JSON object key for `name`: itself when UTF-8, else `bytes_hex:<hex>`.
pub fn key(name: &OsStr) -> String {
    match name.to_str() {
        Some(text) => text.to_owned(),
        None => format!("bytes_hex:{}", crate::fs::digest::hex(name.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[derive(serde::Serialize)]
    struct Sample {
        #[serde(serialize_with = "super::os")]
        path: std::path::PathBuf,
        #[serde(serialize_with = "super::opt_os")]
        value: Option<OsString>,
    }

    #[test]
    fn utf8_is_a_string_and_other_bytes_are_hex() {
        let sample = Sample {
            path: "/tmp/h".into(),
            value: Some(OsString::from_vec(b"/tmp/h\xff".to_vec())),
        };
        assert_eq!(
            serde_json::to_string(&sample).expect("json"),
            r#"{"path":"/tmp/h","value":{"bytes_hex":"2f746d702f68ff"}}"#
        );
    }
}
