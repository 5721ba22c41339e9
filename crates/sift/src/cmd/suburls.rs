//! `sift suburls`: prints the sub-URLs a device tests for a URL, one per line.

use std::process::ExitCode;

/// Arguments of `sift suburls`.
#[derive(clap::Args)]
#[command(
    about = "Print the sub-URLs a device checks for a URL",
    long_about = "Print the sub-URLs a device checks for a URL, one per line, in the order of Apple's \
NEURLFilterManager documentation: the domain hierarchy (down to two labels, without `www.`), each \
without and with the port (explicit, else 443 for https / 80 for http), the path hierarchy with and \
without a trailing `/`, and the full path with query and fragment. Everything is lowercased and \
non-ASCII hosts are Punycoded, as on the device. A blocklist entry blocks a URL when it equals one \
of these sub-URLs. With --parsing FILE (the app's iOS/macOS 27 urlParsingConfiguration) the \
enumeration follows that configuration: excluded components become the placeholder `%*`, case is \
kept when case-sensitive, `www.` is kept when not stripped."
)]
pub struct Args {
    /// The URL, e.g. `https://www.sub1.example.com/a/b/c?id=123#fragment` (no scheme means https).
    pub url: String,
    /// The app's URL parsing configuration (see `--help`): sub-URLs are enumerated under it.
    #[command(flatten)]
    pub parsing: super::parsing::ParsingArg,
}

/// Runs `sift suburls`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let subs = args
        .parsing
        .load()?
        .suburls(&args.url)
        .map_err(|e| anyhow::anyhow!("cannot expand {:?}: {e}", args.url))?;
    let mut out = String::new();
    for s in subs {
        out.push_str(&s);
        out.push('\n');
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
