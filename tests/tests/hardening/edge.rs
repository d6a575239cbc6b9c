//! Strangers at the edge: sockets, WebSocket frames, `/metrics` labels.
