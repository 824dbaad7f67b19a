package vault

// CacheLen reports how many field data keys v holds in memory (tests).
func CacheLen(v *Vault) int { return v.cache.len() }
