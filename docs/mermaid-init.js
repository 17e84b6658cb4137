// Draws every ```mermaid block of a page (mdbook-mermaid turns each into a
// <pre class="mermaid">) once the page has loaded, in colours that suit the
// book's theme. Written here rather than taken from `mdbook-mermaid install`,
// whose script looks the theme buttons up by mdBook 0.4's ids and throws under
// mdBook 0.5 (the book's browser test saw the error); install leaves an
// existing file alone, so it only adds mermaid.min.js beside this one.
(() => {
    const darkThemes = ['ayu', 'navy', 'coal'];
    const isDark = darkThemes.some((t) => document.documentElement.classList.contains(t));
    mermaid.initialize({ startOnLoad: true, theme: isDark ? 'dark' : 'default' });

    // Mermaid draws once. A diagram in a light theme's colours is unreadable
    // on a dark page, so a change between light and dark reloads the page.
    for (const button of document.querySelectorAll('#mdbook-theme-list button.theme')) {
        const theme = button.id.replace('mdbook-theme-', '');
        button.addEventListener('click', () => {
            // default_theme follows the system, which may be either.
            if (theme === 'default_theme' || darkThemes.includes(theme) !== isDark) {
                window.location.reload();
            }
        });
    }
})();
