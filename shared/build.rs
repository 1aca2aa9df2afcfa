// `sqlx::migrate!` embeds the files of `migrations/` at compile time: a new or changed migration
// must rebuild this crate, or a binary would silently ship without it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
