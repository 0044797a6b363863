package version

// FromBuildInfo exposes fromBuildInfo to the external tests.
var FromBuildInfo = fromBuildInfo
