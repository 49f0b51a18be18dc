//! Actions and the keys bound to them: the defaults docs/tui.md lists, remappable
//! through the config file's `[keys]` table (`tag = "x"`,
//! `down = ["j", "down", "ctrl-n"]`).
//!
//! Every action is one row of the `actions!` table below; the enum, the
//! names the config file accepts, the default bindings and the help
//! overlay all come from it. Adding an action is a row there and its
//! handling in [`super::app::App::act`].

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What the table says about one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionSpec {
    /// The name in the config file's `[keys]` table (kebab-case).
    pub name: &'static str,
    /// The keys bound by default, as the config file writes them.
    pub keys: &'static [&'static str],
    /// One line for the help overlay.
    pub help: &'static str,
}

/// Builds [`Action`] and its table from rows of
/// `Variant "name" ["key", ...] "help";`. The rows are in the help
/// overlay's order, and `SPECS[action as usize]` is the action's row.
macro_rules! actions {
    ($($action:ident $name:literal [$($key:literal),+] $help:literal;)+) => {
        /// Everything a key can do in the main screen.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $($action),+
        }

        impl Action {
            /// Every action, in the table's (and the help's) order.
            pub const ALL: [Action; [$($name),+].len()] = [$(Action::$action),+];

            const SPECS: [ActionSpec; [$($name),+].len()] = [$(ActionSpec {
                name: $name,
                keys: &[$($key),+],
                help: $help,
            }),+];
        }
    };
}

actions! {
    Down           "down"            ["j", "down"]           "move down";
    Up             "up"              ["k", "up"]             "move up";
    Top            "top"             ["g", "home"]           "first image";
    Bottom         "bottom"          ["G", "end"]            "last image";
    PageDown       "page-down"       ["pagedown", "ctrl-d"]  "page down";
    PageUp         "page-up"         ["pageup", "ctrl-u"]    "page up";
    SwitchPane     "switch-pane"     ["tab"]                 "switch between the list and the detail pane";
    Tag            "tag"             ["t"]                   "tag / re-tag the selected (or marked) images at MinConfidence";
    TagUntagged    "tag-untagged"    ["T"]                   "tag every untagged image (asks first)";
    RaiseThreshold "raise-threshold" ["+"]                   "raise MinConfidence by 5";
    LowerThreshold "lower-threshold" ["-"]                   "lower MinConfidence by 5";
    SetThreshold   "set-threshold"   ["="]                   "type an exact MinConfidence";
    Mark           "mark"            ["space"]               "mark / unmark the selected image";
    Filter         "filter"          ["/"]                   "filter by key or label text";
    Sort           "sort"            ["s"]                   "cycle the sort: name, lowest confidence, newest";
    StatusFilter   "status-filter"   ["f"]                   "cycle the status filter";
    Edit           "edit"            ["e"]                   "edit labels by hand: +Add -Remove !Flag (the marked images, or the selected one)";
    Accept         "accept"          ["a"]                   "accept the headline as it is, then on to the next to review";
    Pick           "pick"            ["1", "2", "3", "4", "5", "6", "7", "8", "9"] "replace the weak headline with suggestion 1-9, then the next";
    Undo           "undo"            ["u"]                   "undo this session's last review write (newest first)";
    NextBoxes      "next-boxes"      ["]"]                   "draw the next label's boxes on the thumbnail (then none, then the first)";
    PrevBoxes      "prev-boxes"      ["["]                   "draw the previous label's boxes on the thumbnail";
    SpotCheck      "spot-check"      ["x"]                   "spot check: jump to a random tagged image nobody has reviewed";
    Reload         "reload"          ["r"]                   "reload the listing";
    Help           "help"            ["?"]                   "this help";
    Quit           "quit"            ["q"]                   "quit";
}

impl Action {
    /// The action's row of the table.
    pub fn spec(self) -> &'static ActionSpec {
        &Action::SPECS[self as usize]
    }

    /// The name used in the config file's `[keys]` table.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// One line for the help overlay.
    pub fn describe(self) -> &'static str {
        self.spec().help
    }

    /// The action a config file's `[keys]` name stands for.
    pub(crate) fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// A key as written in the config file and shown in the help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
}

impl Key {
    pub fn parse(s: &str) -> Result<Key, String> {
        let (ctrl, rest) = match s.strip_prefix("ctrl-").or_else(|| s.strip_prefix("C-")) {
            Some(r) => (true, r),
            None => (false, s),
        };
        let code = match rest.to_ascii_lowercase().as_str() {
            "down" => KeyCode::Down,
            "up" => KeyCode::Up,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pagedown" | "pgdn" => KeyCode::PageDown,
            "pageup" | "pgup" => KeyCode::PageUp,
            "tab" => KeyCode::Tab,
            "space" => KeyCode::Char(' '),
            "enter" => KeyCode::Enter,
            "esc" => KeyCode::Esc,
            "backspace" => KeyCode::Backspace,
            "delete" | "del" => KeyCode::Delete,
            _ => {
                let mut chars = rest.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if !c.is_control() => KeyCode::Char(c),
                    _ => {
                        return Err(format!(
                            "{s:?} is not a key (try \"x\", \"ctrl-x\", \"pagedown\")"
                        ));
                    }
                }
            }
        };
        Ok(Key { code, ctrl })
    }

    pub(crate) fn from_event(ev: &KeyEvent) -> Key {
        Key {
            code: ev.code,
            ctrl: ev.modifiers.contains(KeyModifiers::CONTROL),
        }
    }

    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Down => "↓".to_string(),
            KeyCode::Up => "↑".to_string(),
            KeyCode::Left => "←".to_string(),
            KeyCode::Right => "→".to_string(),
            KeyCode::Home => "Home".to_string(),
            KeyCode::End => "End".to_string(),
            KeyCode::PageDown => "PgDn".to_string(),
            KeyCode::PageUp => "PgUp".to_string(),
            KeyCode::Tab => "Tab".to_string(),
            KeyCode::Enter => "Enter".to_string(),
            KeyCode::Esc => "Esc".to_string(),
            KeyCode::Backspace => "Backspace".to_string(),
            KeyCode::Delete => "Del".to_string(),
            KeyCode::Char(' ') => "Space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            other => format!("{other:?}"),
        };
        if self.ctrl {
            format!("Ctrl-{base}")
        } else {
            base
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeymapError {
    #[error("[keys]: {0:?} is not an action (actions: {1})")]
    UnknownAction(String, String),
    #[error("[keys] {action}: {message}")]
    BadKey { action: String, message: String },
}

/// Keys to actions.
#[derive(Debug, Clone)]
pub struct Keymap {
    bindings: Vec<(Key, Action)>,
}

impl Default for Keymap {
    fn default() -> Self {
        let mut bindings = Vec::new();
        for a in Action::ALL {
            for k in a.spec().keys {
                bindings.push((Key::parse(k).expect("default keys parse"), a));
            }
        }
        Keymap { bindings }
    }
}

impl Keymap {
    /// The defaults with the config file's `[keys]` table applied: a
    /// remapped action loses its default keys, and a key given to an
    /// action is taken from whatever had it.
    pub(crate) fn from_config(table: &toml::Table) -> Result<Keymap, KeymapError> {
        let mut map = Keymap::default();
        for (name, value) in table {
            let action = Action::from_name(name).ok_or_else(|| {
                let names: Vec<_> = Action::ALL.iter().map(|a| a.name()).collect();
                KeymapError::UnknownAction(name.clone(), names.join(", "))
            })?;
            let keys: Vec<&str> = match value {
                toml::Value::String(s) => vec![s.as_str()],
                toml::Value::Array(a) => a
                    .iter()
                    .map(|v| {
                        v.as_str().ok_or_else(|| KeymapError::BadKey {
                            action: name.clone(),
                            message: "keys must be strings".into(),
                        })
                    })
                    .collect::<Result<_, _>>()?,
                _ => {
                    return Err(KeymapError::BadKey {
                        action: name.clone(),
                        message: "expected a key or a list of keys".into(),
                    });
                }
            };
            let keys: Vec<Key> = keys
                .into_iter()
                .map(|k| {
                    Key::parse(k).map_err(|message| KeymapError::BadKey {
                        action: name.clone(),
                        message,
                    })
                })
                .collect::<Result<_, _>>()?;
            map.bindings
                .retain(|(k, a)| *a != action && !keys.contains(k));
            map.bindings.extend(keys.into_iter().map(|k| (k, action)));
        }
        Ok(map)
    }

    pub fn action(&self, ev: &KeyEvent) -> Option<Action> {
        let key = Key::from_event(ev);
        let found = self.bindings.iter().find(|(k, _)| *k == key);
        // Shifted letters arrive as uppercase with SHIFT; some terminals
        // also report SHIFT on symbols like '+' and '?'.
        found.map(|(_, a)| *a)
    }

    /// Which of the keys bound to `action` this is (0 for the first): the
    /// n-th key bound to `pick` picks suggestion n.
    pub fn position(&self, action: Action, ev: &KeyEvent) -> Option<usize> {
        let key = Key::from_event(ev);
        self.keys_for(action).iter().position(|k| *k == key)
    }

    /// The keys bound to an action, for the help overlay and hints.
    pub(crate) fn keys_for(&self, action: Action) -> Vec<Key> {
        self.bindings
            .iter()
            .filter(|(_, a)| *a == action)
            .map(|(k, _)| *k)
            .collect()
    }

    pub(crate) fn label_for(&self, action: Action) -> String {
        let keys = self.keys_for(action);
        if keys.is_empty() {
            return "(unbound)".into();
        }
        let labels: Vec<String> = keys.iter().map(Key::label).collect();
        // The digits 1-9 in a row read as a range.
        let digits: Vec<String> = (1..=9).map(|d| d.to_string()).collect();
        if labels == digits {
            return "1-9".into();
        }
        labels.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn defaults_follow_the_contract_and_remap_works() {
        let m = Keymap::default();
        assert_eq!(
            m.action(&ev(KeyCode::Char('j'), KeyModifiers::NONE)),
            Some(Action::Down)
        );
        assert_eq!(
            m.action(&ev(KeyCode::Down, KeyModifiers::NONE)),
            Some(Action::Down)
        );
        assert_eq!(
            m.action(&ev(KeyCode::Char('T'), KeyModifiers::SHIFT)),
            Some(Action::TagUntagged)
        );
        assert_eq!(
            m.action(&ev(KeyCode::Char(' '), KeyModifiers::NONE)),
            Some(Action::Mark)
        );
        assert_eq!(
            m.action(&ev(KeyCode::Char('x'), KeyModifiers::NONE)),
            Some(Action::SpotCheck)
        );
        assert_eq!(m.action(&ev(KeyCode::Char('z'), KeyModifiers::NONE)), None);

        let table: toml::Table = toml::from_str("tag = \"x\"\nquit = [\"ctrl-q\", \"t\"]").unwrap();
        let m = Keymap::from_config(&table).unwrap();
        assert_eq!(
            m.action(&ev(KeyCode::Char('x'), KeyModifiers::NONE)),
            Some(Action::Tag)
        );
        assert_eq!(
            m.action(&ev(KeyCode::Char('t'), KeyModifiers::NONE)),
            Some(Action::Quit)
        );
        assert_eq!(
            m.action(&ev(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(m.action(&ev(KeyCode::Char('q'), KeyModifiers::NONE)), None);
        assert_eq!(m.label_for(Action::Quit), "Ctrl-q/t");

        let bad: toml::Table = toml::from_str("tagg = \"x\"").unwrap();
        assert!(
            Keymap::from_config(&bad)
                .unwrap_err()
                .to_string()
                .contains("tagg")
        );
        let bad: toml::Table = toml::from_str("tag = \"xy\"").unwrap();
        assert!(Keymap::from_config(&bad).is_err());
    }

    /// The table is well formed: names are unique kebab-case, defaults
    /// parse, and no default key is bound to two actions.
    #[test]
    fn the_action_table_is_consistent() {
        let mut names = std::collections::HashSet::new();
        let mut keys = std::collections::HashMap::new();
        for a in Action::ALL {
            let name = a.name();
            assert!(names.insert(name), "{name} twice");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{name}"
            );
            assert_eq!(Action::from_name(name), Some(a));
            assert!(!a.describe().is_empty(), "{name}");
            for k in a.spec().keys {
                let key = Key::parse(k).unwrap();
                assert_eq!(keys.insert(key, a), None, "{k} bound twice");
            }
            assert_eq!(Keymap::default().keys_for(a).len(), a.spec().keys.len());
        }
        assert_eq!(Action::from_name("tagg"), None);
    }
}
