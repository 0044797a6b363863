package images

// BlockedReason exposes blockedReason to the external tests.
var BlockedReason = blockedReason
