// A tiny element builder: text goes in as text nodes, never as HTML, so names and values from
// the broker cannot inject markup.

type Child = Node | string | number | null | undefined | false;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) {
    if (c === null || c === undefined || c === false || c === '') continue;
    node.append(typeof c === 'number' ? String(c) : c);
  }
  return node;
}
