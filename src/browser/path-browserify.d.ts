// path-browserify is Node's posix path module for browsers (the browser build's node:path).
declare module "path-browserify" {
  import path from "node:path";
  export default path.posix;
}
