// The token the user entered, kept for this browser tab only (sessionStorage: gone when the
// tab closes; never in a URL, a cookie or localStorage).
const KEY = "fleetsync.token";

export const session = {
  get: (): string | null => sessionStorage.getItem(KEY),
  set: (token: string) => sessionStorage.setItem(KEY, token),
  clear: () => sessionStorage.removeItem(KEY),
};
