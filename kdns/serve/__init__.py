"""The trio shell: sockets in, `Responder.handle` in the middle, sockets out."""
