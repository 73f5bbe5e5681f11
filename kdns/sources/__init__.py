"""Where Kubernetes objects come from: manifest files now, the API watch later."""
