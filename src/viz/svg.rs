//! Rendered figures: [`Svg`] and [`Html`] wrappers that display inline in evcxr Jupyter
//! notebooks and can be saved to disk.
use std::fmt;
use std::path::Path;

use crate::error::{Error, Result};

/// A rendered SVG document.
///
/// In an evcxr notebook, a cell whose last expression is an `Svg` shows the figure
/// (evcxr calls [`Svg::evcxr_display`], which emits an `image/svg+xml` output).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Svg(pub String);

/// A fragment of HTML. Displays in evcxr notebooks as a `text/html` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Html(pub String);

fn save_text(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
    }
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

impl Svg {
    /// The SVG markup.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes the wrapper, returning the SVG markup.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Prints the evcxr rich-output block (`image/svg+xml`). evcxr calls this automatically
    /// when an `Svg` is the value of a notebook cell.
    pub fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT image/svg+xml\n{}\nEVCXR_END_CONTENT",
            self.0
        );
    }

    /// Writes the SVG to `path` (conventionally `*.svg`), creating parent folders as needed.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save_text(path.as_ref(), &self.0)
    }

    /// Wraps the SVG in a `<div>` so that it can be combined with other HTML.
    pub fn to_html(&self) -> Html {
        Html(format!("<div>{}</div>", self.0))
    }
}

impl Html {
    /// The HTML markup.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes the wrapper, returning the HTML markup.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Prints the evcxr rich-output block (`text/html`). evcxr calls this automatically
    /// when an `Html` is the value of a notebook cell.
    pub fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT",
            self.0
        );
    }

    /// Writes the HTML to `path`, creating parent folders as needed.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save_text(path.as_ref(), &self.0)
    }

    /// Lays several figures out side by side (wrapping when the row is too narrow).
    pub fn row(figures: &[Svg]) -> Html {
        let mut s = String::from(
            "<div style=\"display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start\">",
        );
        for f in figures {
            s.push_str("<div>");
            s.push_str(&f.0);
            s.push_str("</div>");
        }
        s.push_str("</div>");
        Html(s)
    }
}

impl From<Svg> for Html {
    fn from(svg: Svg) -> Html {
        svg.to_html()
    }
}

impl fmt::Display for Svg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Html {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Svg {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Html {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
