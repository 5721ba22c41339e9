//! Keyword PIR as Apple's MulPir does it: cuckoo-hashed buckets, database processing,
//! oblivious query expansion, server evaluation and a reference client.
