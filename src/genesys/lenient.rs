//! Genesys answers read leniently. A `null`, or a value of the wrong type, where a parser
//! expects something is read as absent, so one odd field costs that field (or the list
//! entry holding it) and never the whole answer: `"stats": null` in one datum must not
//! lose the other queues of the request. Bad data is logged once per kind, not per
//! occurrence, because the same oddity repeats on every poll.
//!
//! Use on struct fields: `#[serde(default, deserialize_with = "lenient::number")]`. A
//! parser that folds a big answer as it reads it walks its lists with [`Each`] instead of
//! collecting them with [`list`]: the same rules, nothing kept.
//! Every visitor consumes the value it rejects, so reading goes on after it.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Mutex;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// More than any contact centre has of anything: a count above it is read as this.
pub const MAX_COUNT: f64 = 1e9;

/// Logs `what` at warn level the first time `kind` is seen in this process; true then.
pub fn note_once(kind: &'static str, what: fmt::Arguments) -> bool {
    static SEEN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.contains(&kind) {
        return false;
    }
    seen.push(kind);
    log::warn!("Genesys Cloud sent {what} (logged once)");
    true
}

/// A count as the writer can use it: absent, negative or not a number → 0, fractional →
/// rounded, huge → [`MAX_COUNT`]; each coercion logged once.
pub fn count(value: Option<f64>) -> f64 {
    let Some(v) = value else { return 0.0 };
    if !v.is_finite() || v < 0.0 {
        note_once("negative count", format_args!("a count of {v}; read as 0"));
        0.0
    } else if v > MAX_COUNT {
        note_once(
            "huge count",
            format_args!("a count of {v}; read as {MAX_COUNT}"),
        );
        MAX_COUNT
    } else if v.fract() != 0.0 {
        note_once(
            "fractional count",
            format_args!("a fractional count ({v}); rounded"),
        );
        v.round()
    } else {
        v
    }
}

fn wrong_type(expected: &'static str, found: &dyn fmt::Display) {
    note_once(
        expected,
        format_args!("{found} where {expected} was expected; read as absent"),
    );
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// The visitor methods every lenient reader shares: `null` is absent; every other shape
/// not overridden is absent and noted under `$expected`.
macro_rules! absent_unless_overridden {
    (@bool $expected:expr) => {
        fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
            wrong_type($expected, &format_args!("a boolean ({v})"));
            Ok(None)
        }
    };
    (@number $expected:expr) => {
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            wrong_type($expected, &format_args!("a number ({v})"));
            Ok(None)
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            wrong_type($expected, &format_args!("a number ({v})"));
            Ok(None)
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            wrong_type($expected, &format_args!("a number ({v})"));
            Ok(None)
        }
    };
    (@text $expected:expr) => {
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            wrong_type($expected, &"a string");
            Ok(None)
        }
    };
    (@list $expected:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            wrong_type($expected, &"a list");
            drain_seq(seq).map(|_| None)
        }
    };
    (@object $expected:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            wrong_type($expected, &"an object");
            drain_map(map).map(|_| None)
        }
    };
    ($expected:expr; $($skip:ident),*) => {
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str($expected)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        $(absent_unless_overridden!(@$skip $expected);)*
    };
}

struct TopVisitor<S>(S);

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for TopVisitor<S> {
    type Value = S::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<S::Value, A::Error> {
        self.0.deserialize(MapAccessDeserializer::new(map))
    }
}

/// A whole answer, which must be a JSON object (serde would also take a struct written as
/// a list, so `[1]` would read as an empty answer); its fields are read by `T`.
pub fn answer<'de, T: Deserialize<'de>>(body: &'de str) -> Result<T, serde_json::Error> {
    answer_seed(body, PhantomData)
}

/// [`answer`] read by a seed, for parsers that fold the answer as it is read.
pub fn answer_seed<'de, S: DeserializeSeed<'de>>(
    body: &'de str,
    seed: S,
) -> Result<S::Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(body);
    let value = de.deserialize_map(TopVisitor(seed))?;
    de.end()?;
    Ok(value)
}

/// An object read by the seed `S` (given it as a map); anything else → absent.
struct ObjectVisitor<S>(S);

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for ObjectVisitor<S> {
    type Value = Option<S::Value>;
    absent_unless_overridden!("an object"; bool, number, text, list);

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0
            .deserialize(MapAccessDeserializer::new(map))
            .map(Some)
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for ObjectVisitor<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// An object read as `T` (whose fields must be lenient too); anything else → default.
pub fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    d.deserialize_any(ObjectVisitor(PhantomData))
        .map(Option::unwrap_or_default)
}

/// [`object`] as a seed, for hand-written map visitors (`map.next_value_seed(..)`).
pub struct Object<T>(PhantomData<T>);

impl<T> Default for Object<T> {
    fn default() -> Self {
        Object(PhantomData)
    }
}

impl<'de, T: Deserialize<'de> + Default> DeserializeSeed<'de> for Object<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        object(d)
    }
}

/// Takes the objects of a list one at a time, as they are read (see [`Each`]).
pub trait Entry<'de> {
    /// Reads one object of the list, given as a map.
    fn entry<D: Deserializer<'de>>(&mut self, object: D) -> Result<(), D::Error>;
}

/// Each object read as `T` and handed to a closure: made by [`each`].
pub struct Typed<T, F>(F, PhantomData<T>);

/// An [`Entry`] reading each object as `T` (whose fields must be lenient too) for `take`.
pub fn each<'de, T: Deserialize<'de>, F: FnMut(T)>(take: F) -> Typed<T, F> {
    Typed(take, PhantomData)
}

impl<'de, T: Deserialize<'de>, F: FnMut(T)> Entry<'de> for Typed<T, F> {
    fn entry<D: Deserializer<'de>>(&mut self, object: D) -> Result<(), D::Error> {
        T::deserialize(object).map(&mut self.0)
    }
}

struct EntrySeed<'a, E>(&'a mut E);

impl<'de, E: Entry<'de>> DeserializeSeed<'de> for EntrySeed<'_, E> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.0.entry(d)
    }
}

/// A list of objects walked as it is read, each handed to the [`Entry`]: nothing of the
/// list is kept. Entries that are not objects are left out, and anything but a list is an
/// empty one. A seed, for hand-written map visitors; [`list`] is the same collected.
pub struct Each<'a, E>(pub &'a mut E);

impl<'de, N: Entry<'de>> DeserializeSeed<'de> for Each<'_, N> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self).map(drop)
    }
}

impl<'de, N: Entry<'de>> Visitor<'de> for Each<'_, N> {
    type Value = Option<()>;
    absent_unless_overridden!("a list"; bool, number, text, object);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq
            .next_element_seed(ObjectVisitor(EntrySeed(&mut *self.0)))?
            .is_some()
        {}
        Ok(Some(()))
    }
}

/// A whole answer of the `{"results": [...]}` shape both analytics queries answer with:
/// each object of `results` handed to the [`Entry`] as it is read, other keys skipped, and
/// `results` twice an error (as for any derived struct). The seed for [`answer_seed`].
pub struct Results<'a, E>(pub &'a mut E);

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum ResultsField {
    Results,
    #[serde(other)]
    Other,
}

impl<'de, E: Entry<'de>> DeserializeSeed<'de> for Results<'_, E> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, E: Entry<'de>> Visitor<'de> for Results<'_, E> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an analytics answer")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut results = false;
        while let Some(field) = map.next_key()? {
            match field {
                ResultsField::Results if results => {
                    return Err(serde::de::Error::duplicate_field("results"))
                }
                ResultsField::Results => {
                    results = true;
                    map.next_value_seed(Each(&mut *self.0))?;
                }
                ResultsField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A list of objects, each read as `T`; entries that are not objects are left out, and
/// anything but a list is an empty one.
pub fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let mut items = Vec::new();
    Each(&mut each(|item| items.push(item))).deserialize(d)?;
    Ok(items)
}

struct NumberVisitor;

impl<'de> Visitor<'de> for NumberVisitor {
    type Value = Option<f64>;
    absent_unless_overridden!("a number"; bool, list, object);

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v).filter(|v| v.is_finite()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        let parsed = v.trim().parse::<f64>().ok().filter(|n| n.is_finite());
        if parsed.is_none() {
            wrong_type("a number", &"a string that is not a number");
        }
        Ok(parsed)
    }
}

/// A finite number, also when sent as a numeric string (`"86399"`).
pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_any(NumberVisitor)
}

struct TextVisitor<S>(PhantomData<S>);

impl<'de, S: From<&'de str> + From<String>> Visitor<'de> for TextVisitor<S> {
    type Value = Option<S>;
    absent_unless_overridden!("a string"; bool, number, list, object);

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(S::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(S::from(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(S::from(v)))
    }
}

/// A string, borrowed from the answer when `S` can (`Cow<str>`); anything else → absent.
pub fn text<'de, D, S>(d: D) -> Result<Option<S>, D::Error>
where
    D: Deserializer<'de>,
    S: From<&'de str> + From<String>,
{
    d.deserialize_any(TextVisitor(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Inner<'a> {
        #[serde(default, deserialize_with = "number")]
        n: Option<f64>,
        #[serde(default, borrow, deserialize_with = "text")]
        s: Option<Cow<'a, str>>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Outer<'a> {
        #[serde(default, borrow, deserialize_with = "object")]
        one: Inner<'a>,
        #[serde(default, borrow, deserialize_with = "list")]
        many: Vec<Inner<'a>>,
    }

    fn outer(json: &str) -> Outer<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn nulls_and_wrong_types_are_absent_and_the_rest_is_kept() {
        let o = outer(
            r#"{"one":null,"many":[{"n":1,"s":"a"},null,5,"x",[1,{"a":2}],{"n":"2.5","s":7},
               {"n":{"deep":[1,2]},"s":["y"]},{"n":"NaN","s":null},{"n":true,"s":false}]}"#,
        );
        assert_eq!(o.one, Inner::default());
        let ns: Vec<_> = o.many.iter().map(|i| i.n).collect();
        assert_eq!(ns, [Some(1.0), Some(2.5), None, None, None]);
        let ss: Vec<_> = o.many.iter().map(|i| i.s.as_deref()).collect();
        assert_eq!(ss, [Some("a"), None, None, None, None]);
        assert_eq!(
            outer(r#"{"one":[1,[2]],"many":{"a":[]}}"#),
            Outer::default()
        );
        assert_eq!(outer(r#"{"one":"x","many":"y"}"#), Outer::default());
        assert!(matches!(
            outer(r#"{"one":{"s":"plain"}}"#).one.s,
            Some(Cow::Borrowed("plain"))
        ));
    }

    #[test]
    fn counts_are_coerced_and_each_kind_is_noted_once() {
        assert_eq!(count(None), 0.0);
        assert_eq!(count(Some(-3.0)), 0.0);
        assert_eq!(count(Some(2.6)), 3.0);
        assert_eq!(count(Some(1e300)), MAX_COUNT);
        assert_eq!(count(Some(7.0)), 7.0);
        assert!(note_once("test kind", format_args!("x")));
        assert!(!note_once("test kind", format_args!("x")));
    }
}

/// Random damage to a JSON answer, for the property tests of every Genesys parser: keys
/// removed, nulls, wrong types, huge, negative and fractional numbers, `"NaN"` strings,
/// unknown enum values and Unicode, each at a random node of the document.
#[cfg(test)]
pub(crate) mod mutation {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// One step of a path into a JSON document.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Step {
        Key(String),
        Index(usize),
    }

    /// What to do at the chosen node (`which` picks the node, in document order).
    #[derive(Debug, Clone)]
    pub struct Mutation {
        which: usize,
        kind: u8,
    }

    const KINDS: u8 = 12;

    pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
        proptest::collection::vec(
            (any::<usize>(), 0..KINDS).prop_map(|(which, kind)| Mutation { which, kind }),
            1..4,
        )
    }

    fn paths(value: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        out.push(here.clone());
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    here.push(Step::Key(key.clone()));
                    paths(child, here, out);
                    here.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    here.push(Step::Index(i));
                    paths(child, here, out);
                    here.pop();
                }
            }
            _ => {}
        }
    }

    fn node<'a>(value: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
        path.iter().try_fold(value, |v, step| match step {
            Step::Key(k) => v.get_mut(k.as_str()),
            Step::Index(i) => v.get_mut(*i),
        })
    }

    fn replacement(kind: u8) -> Value {
        match kind {
            1 => Value::Null,
            2 => json!("NaN"),
            3 => json!(1e300),
            4 => json!(-7),
            5 => json!(2.5),
            6 => json!(true),
            7 => json!([1, "x", null]),
            8 => json!({"unexpected": {"deep": [null]}}),
            9 => json!("UNKNOWN_ENUM_VALUE"),
            10 => json!("Ünï\u{0}cødé 🎧 \\ \"q\""),
            _ => json!(u64::MAX),
        }
    }

    /// Applies `mutations` to `doc`; returns the paths touched (a removed key's path too).
    pub fn apply(doc: &mut Value, mutations: &[Mutation]) -> Vec<Vec<Step>> {
        let mut touched = Vec::new();
        for m in mutations {
            let mut all = Vec::new();
            paths(doc, &mut Vec::new(), &mut all);
            let path = all.swap_remove(m.which % all.len());
            let removable = matches!(path.last(), Some(Step::Key(_)));
            if m.kind == 0 && removable {
                if let (Some(Step::Key(key)), Some(parent)) =
                    (path.last(), node(doc, &path[..path.len() - 1]))
                {
                    parent.as_object_mut().map(|o| o.remove(key));
                }
            } else if let Some(target) = node(doc, &path) {
                *target = replacement(m.kind);
            }
            touched.push(path);
        }
        touched
    }

    /// The index `i` of `results[i]` (or another top-level list) a path goes through;
    /// `None` when the path touches the document above its list entries.
    pub fn entry_of(path: &[Step], list: &str) -> Option<usize> {
        match path {
            [Step::Key(key), Step::Index(i), ..] if key == list => Some(*i),
            _ => None,
        }
    }
}
