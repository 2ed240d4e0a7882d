//! Tuning aid: `cargo run --release -p hypernix-monitor --example nab -- DATA OUT [k=v ...]`
//! with keys levels, orders, rest, learning, fire, mix, horizon, margin.

use hypernix_monitor::Config;
use hypernix_monitor::nab::{self, Corpus};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, out, rest @ ..] = args.as_slice() else {
        return Err("usage: nab DATA OUT [key=value ...]".into());
    };
    let mut c = Config::default();
    for kv in rest {
        let (k, v) = kv.split_once('=').ok_or("expected key=value")?;
        match k {
            "levels" => c.levels = v.parse()?,
            "orders" => c.orders = v.parse()?,
            "rest" => c.rest = v.parse()?,
            "learning" => c.learning = v.parse()?,
            "fire" => c.fire = v.parse()?,
            "mix" => c.mix = v.parse()?,
            "margin" => c.margin = v.parse()?,
            "horizon" => c.horizon = v.parse()?,
            _ => return Err(format!("unknown key {k}").into()),
        }
    }
    let corpus = Corpus::load(data.as_ref())?;
    let eval = nab::run(&corpus, &c, out.as_ref(), |_| {})?;
    for p in &eval.profiles {
        print!(
            "{} {:.2} (t {:.3})  ",
            p.profile, p.score.normalized, p.score.threshold
        );
    }
    println!(
        "| {:.0} ns/pt {} B",
        eval.ns_per_point(),
        eval.bytes_per_series
    );
    Ok(())
}
