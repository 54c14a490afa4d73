import "@mantine/core/styles.css";
import "@mantine/notifications/styles.css";
import {
  createTheme,
  darken,
  defaultVariantColorsResolver,
  MantineProvider,
  Modal,
  parseThemeColor,
  type CSSVariablesResolver,
  type VariantColorsResolver,
} from "@mantine/core";
import { Notifications } from "@mantine/notifications";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter } from "react-router";
import { ApiError } from "./api/client";
import { App } from "./App";

const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      // A 4xx will not change by asking again.
      retry: (failures, error) => !(error instanceof ApiError && error.status >= 400 && error.status < 500) && failures < 2,
      refetchOnWindowFocus: false,
    },
  },
});

// Light, subtle and outline variants write in shade 6, below WCAG AA contrast on their
// tinted backgrounds: a darkened shade 9 meets it for every colour (axe checks it in e2e).
const variantColorResolver: VariantColorsResolver = (input) => {
  const colors = defaultVariantColorsResolver(input);
  if (input.variant === "filled") {
    // White text on shade 8 of orange, yellow or green is below 4.5:1; a darkened shade 9 is not.
    const filled = parseThemeColor({ color: input.color || input.theme.primaryColor, theme: input.theme });
    if (!filled.isThemeColor || filled.color === input.theme.primaryColor) return colors;
    const background = darken(input.theme.colors[filled.color]![9]!, 0.2);
    return { ...colors, background, hover: darken(background, 0.1), color: "#fff" };
  }
  if (input.variant !== "light" && input.variant !== "subtle" && input.variant !== "outline") return colors;
  const parsed = parseThemeColor({ color: input.color || input.theme.primaryColor, theme: input.theme });
  if (!parsed.isThemeColor) return colors;
  const text = darken(input.theme.colors[parsed.color]![9]!, 0.35);
  return { ...colors, color: text, hoverColor: text, ...(input.variant === "outline" ? { border: `1px solid ${text}` } : {}) };
};

// Darker primary shade: white text on filled buttons meets WCAG AA contrast.
const theme = createTheme({
  primaryColor: "indigo",
  primaryShade: 8,
  defaultRadius: "sm",
  variantColorResolver,
  components: { Modal: Modal.extend({ defaultProps: { closeButtonProps: { "aria-label": "Close dialog" } } }) },
});

// Mantine's dimmed grey is below WCAG AA contrast on white; a darker grey meets it.
const resolver: CSSVariablesResolver = (t) => ({ variables: {}, light: { "--mantine-color-dimmed": t.colors.gray[7]! }, dark: {} });

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <MantineProvider theme={theme} cssVariablesResolver={resolver}>
      <Notifications position="top-right" />
      <QueryClientProvider client={queryClient}>
        <BrowserRouter>
          <App />
        </BrowserRouter>
      </QueryClientProvider>
    </MantineProvider>
  </StrictMode>,
);
