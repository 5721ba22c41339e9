//! Privacy Pass (RFC 9578) token type 2: a blind RSA issuer and token verification as Apple's
//! PIR service expects them.
