//! The create form: name, image, memory, vCPUs, disk size, NAT, and whether to start it. Text is
//! parsed as the CLI parses its flags (sizes by the same function); everything else is checked
//! by the daemon, whose one-line answer the form shows — the same rules and messages as
//! `banger vm create`.

use banger_api::request::CreateVm;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// One field of the form.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub label: &'static str,
    pub value: String,
    /// Shown when empty.
    pub hint: &'static str,
    /// A yes/no field (Space toggles it).
    pub toggle: Option<bool>,
}

/// What a key did to the form.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Stay,
    Cancel,
    Submit(CreateVm),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    pub fields: Vec<Field>,
    pub focus: usize,
    /// The last refusal (parsing here, or the daemon's).
    pub error: Option<String>,
    /// Sent, waiting for the daemon to accept it.
    pub submitting: bool,
}

pub const NAME: usize = 0;
pub const IMAGE: usize = 1;
pub const MEMORY: usize = 2;
pub const VCPU: usize = 3;
pub const DISK: usize = 4;
pub const NAT: usize = 5;
pub const START: usize = 6;

impl Default for Form {
    fn default() -> Self {
        let text = |label, hint| Field { label, value: String::new(), hint, toggle: None };
        Form {
            fields: vec![
                text("name", "generated"),
                text("image", "default"),
                text("memory MiB", "from config"),
                text("vCPUs", "from config"),
                text("disk size", "from config, e.g. 16G"),
                Field { label: "NAT", value: String::new(), hint: "", toggle: Some(false) },
                Field { label: "start now", value: String::new(), hint: "", toggle: Some(true) },
            ],
            focus: 0,
            error: None,
            submitting: false,
        }
    }
}

impl Form {
    pub fn key(&mut self, key: KeyEvent) -> Outcome {
        if self.submitting {
            return if key.code == KeyCode::Esc { Outcome::Cancel } else { Outcome::Stay };
        }
        let n = self.fields.len();
        match key.code {
            KeyCode::Esc => return Outcome::Cancel,
            KeyCode::Enter => {
                return match self.request() {
                    Ok(req) => {
                        self.error = None;
                        self.submitting = true;
                        Outcome::Submit(req)
                    }
                    Err(e) => {
                        self.error = Some(e);
                        Outcome::Stay
                    }
                };
            }
            KeyCode::Tab | KeyCode::Down => self.focus = (self.focus + 1) % n,
            KeyCode::BackTab | KeyCode::Up => self.focus = (self.focus + n - 1) % n,
            KeyCode::Char(' ') if self.fields[self.focus].toggle.is_some() => {
                let t = self.fields[self.focus].toggle.as_mut().expect("a toggle");
                *t = !*t;
            }
            KeyCode::Backspace => {
                self.fields[self.focus].value.pop();
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.fields[self.focus].value.clear();
            }
            KeyCode::Char(c)
                if self.fields[self.focus].toggle.is_none()
                    && !c.is_control()
                    && self.fields[self.focus].value.chars().count() < 64 =>
            {
                self.fields[self.focus].value.push(c);
            }
            _ => {}
        }
        Outcome::Stay
    }

    /// The request the form describes, or why it does not describe one.
    pub fn request(&self) -> Result<CreateVm, String> {
        let text = |i: usize| Some(self.fields[i].value.trim().to_string()).filter(|v| !v.is_empty());
        let number = |i: usize, what: &str| -> Result<Option<u32>, String> {
            text(i).map(|v| v.parse::<u32>().map_err(|_| format!("{what}: {v:?} is not a whole number"))).transpose()
        };
        Ok(CreateVm {
            name: text(NAME),
            image: text(IMAGE),
            memory_mib: number(MEMORY, "memory")?,
            vcpus: number(VCPU, "vCPUs")?,
            disk_size: text(DISK)
                .map(|v| banger_config::size::parse_size(&v).map_err(|e| format!("disk size: {e}")))
                .transpose()?,
            nat: self.fields[NAT].toggle == Some(true),
            no_start: self.fields[START].toggle != Some(true),
            ..CreateVm::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(form: &mut Form, text: &str) {
        for c in text.chars() {
            form.key(KeyEvent::from(KeyCode::Char(c)));
        }
    }

    #[test]
    fn fields_become_the_cli_request() {
        let mut f = Form::default();
        assert_eq!(
            f.request().unwrap(),
            CreateVm { no_start: false, ..Default::default() },
            "empty fields are the daemon's defaults"
        );
        typed(&mut f, "calm-otter");
        f.key(KeyEvent::from(KeyCode::Tab));
        f.key(KeyEvent::from(KeyCode::Tab));
        typed(&mut f, "512");
        f.key(KeyEvent::from(KeyCode::Tab));
        typed(&mut f, "2");
        f.key(KeyEvent::from(KeyCode::Tab));
        typed(&mut f, "16G");
        f.key(KeyEvent::from(KeyCode::Tab));
        f.key(KeyEvent::from(KeyCode::Char(' ')));
        f.key(KeyEvent::from(KeyCode::Tab));
        f.key(KeyEvent::from(KeyCode::Char(' ')));
        let Outcome::Submit(req) = f.key(KeyEvent::from(KeyCode::Enter)) else { panic!("submitted") };
        assert_eq!(
            req,
            CreateVm {
                name: Some("calm-otter".into()),
                image: None,
                memory_mib: Some(512),
                vcpus: Some(2),
                disk_size: Some(16 << 30),
                nat: true,
                no_start: true,
                ..CreateVm::default()
            }
        );
        assert!(f.submitting);
    }

    #[test]
    fn bad_numbers_and_sizes_say_which_field_and_why() {
        let mut f = Form { focus: MEMORY, ..Default::default() };
        typed(&mut f, "lots");
        assert_eq!(f.key(KeyEvent::from(KeyCode::Enter)), Outcome::Stay);
        assert_eq!(f.error.as_deref(), Some("memory: \"lots\" is not a whole number"));
        f.key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        f.focus = DISK;
        typed(&mut f, "12Q");
        f.key(KeyEvent::from(KeyCode::Enter));
        let want = format!("disk size: {}", banger_config::size::parse_size("12Q").unwrap_err());
        assert_eq!(f.error.as_deref(), Some(want.as_str()));
        assert!(!f.submitting);
        assert_eq!(f.key(KeyEvent::from(KeyCode::Esc)), Outcome::Cancel);
    }
}
