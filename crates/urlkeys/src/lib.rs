//! URL keys as the device looks them up: sub-URL expansion of a request URL and import of
//! blocklists (plain, hosts, AdBlock domain rules, Apple `KeywordDatabase` text format) into
//! normalized scheme-less keys.
