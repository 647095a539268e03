// Dark and light follow the system: PatternFly 6 switches its tokens with one class on <html>.
const DARK_CLASS = "pf-v6-theme-dark";

export function followSystemTheme(root: HTMLElement = document.documentElement, media = window.matchMedia?.("(prefers-color-scheme: dark)")): void {
  if (!media) return;
  const apply = () => root.classList.toggle(DARK_CLASS, media.matches);
  apply();
  media.addEventListener("change", apply);
}
