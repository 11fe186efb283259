//! Configuration: built-in defaults, then `ferry.toml`, then `FERRY_*`
//! environment variables (`FERRY_IRC__SECRET`), read with figment.
