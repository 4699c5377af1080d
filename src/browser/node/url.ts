// node:url in the browser build: file URLs of the (virtual) file system's paths.
export function fileURLToPath(url: string | URL): string {
  const u = new URL(String(url));
  return u.protocol === "file:" ? decodeURIComponent(u.pathname) : u.pathname;
}

export function pathToFileURL(p: string): URL {
  return new URL("file://" + encodeURI(p));
}

export default { fileURLToPath, pathToFileURL };
