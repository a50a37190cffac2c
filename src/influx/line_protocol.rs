//! (placeholder until the influx branch lands)
pub struct LineBuilder<'a> {
    out: &'a mut String,
    start: usize,
    fields: usize,
}
impl<'a> LineBuilder<'a> {
    pub fn new(out: &'a mut String, measurement: &str) -> Self {
        let start = out.len();
        out.push_str(measurement);
        LineBuilder {
            out,
            start,
            fields: 0,
        }
    }
    pub fn tag(self, key: &str, value: &str) -> Self {
        let v = value.replace(['\n', '\r'], " ");
        let v = v.trim_end_matches('\\');
        self.out.push(',');
        self.out.push_str(key);
        self.out.push('=');
        for c in v.chars() {
            if matches!(c, ' ' | ',' | '=') {
                self.out.push('\\');
            }
            self.out.push(c);
        }
        self
    }
    pub fn field_i64(mut self, key: &str, value: i64) -> Self {
        self.out.push(if self.fields == 0 { ' ' } else { ',' });
        self.out.push_str(key);
        self.out.push('=');
        self.out.push_str(&value.to_string());
        self.out.push('i');
        self.fields += 1;
        self
    }
    pub fn field_f64(mut self, key: &str, value: f64) -> Self {
        self.out.push(if self.fields == 0 { ' ' } else { ',' });
        self.out.push_str(key);
        self.out.push('=');
        self.out.push_str(&value.to_string());
        self.fields += 1;
        self
    }
    pub fn finish(self, timestamp_s: i64) -> bool {
        if self.fields == 0 {
            self.out.truncate(self.start);
            return false;
        }
        self.out.push(' ');
        self.out.push_str(&timestamp_s.to_string());
        self.out.push('\n');
        true
    }
}
