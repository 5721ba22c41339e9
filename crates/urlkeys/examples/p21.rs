fn main() {
    let a: Vec<String> = std::env::args().collect();
    let c = sift_urlkeys::ParsingConfiguration::from_json(&a[1], "arg").unwrap();
    println!("norm {:?}", c.normalize_key(&a[2]));
    for s in c.suburls(&a[2]).unwrap() { println!("{s}"); }
}
