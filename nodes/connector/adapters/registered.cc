// The adapters of this build register themselves from the folders beside
// this file (nodes/connector/channel_adapter.h); this file only keeps the
// adapter library non-empty in a build that has none.
