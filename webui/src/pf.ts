// Every PatternFly component the UI uses, imported by its component path: never through
// the packages' top-level index, which drags in every component and its styles (this is
// what kept cockpit-machines at 1.5 MB). Each component's module imports only its own CSS.
export * from "@patternfly/react-core/dist/esm/components/ActionList/index.js";
export * from "@patternfly/react-core/dist/esm/components/Alert/index.js";
export * from "@patternfly/react-core/dist/esm/components/Button/index.js";
export * from "@patternfly/react-core/dist/esm/components/Card/index.js";
export * from "@patternfly/react-core/dist/esm/components/ClipboardCopy/index.js";
export * from "@patternfly/react-core/dist/esm/components/Content/index.js";
export * from "@patternfly/react-core/dist/esm/components/DescriptionList/index.js";
export * from "@patternfly/react-core/dist/esm/components/Dropdown/index.js";
export * from "@patternfly/react-core/dist/esm/components/EmptyState/index.js";
export * from "@patternfly/react-core/dist/esm/components/Form/index.js";
export * from "@patternfly/react-core/dist/esm/components/FormSelect/index.js";
export * from "@patternfly/react-core/dist/esm/components/HelperText/index.js";
export * from "@patternfly/react-core/dist/esm/components/Label/index.js";
export * from "@patternfly/react-core/dist/esm/components/LoginPage/index.js";
export * from "@patternfly/react-core/dist/esm/components/Masthead/index.js";
export * from "@patternfly/react-core/dist/esm/components/MenuToggle/index.js";
export * from "@patternfly/react-core/dist/esm/components/Modal/index.js";
export * from "@patternfly/react-core/dist/esm/components/Nav/index.js";
export * from "@patternfly/react-core/dist/esm/components/Page/index.js";
export * from "@patternfly/react-core/dist/esm/components/SkipToContent/index.js";
export * from "@patternfly/react-core/dist/esm/components/Spinner/index.js";
export * from "@patternfly/react-core/dist/esm/components/Switch/index.js";
export * from "@patternfly/react-core/dist/esm/components/Tabs/index.js";
export * from "@patternfly/react-core/dist/esm/components/TextInput/index.js";
export * from "@patternfly/react-core/dist/esm/components/TextArea/index.js";
export * from "@patternfly/react-core/dist/esm/components/Title/index.js";
export * from "@patternfly/react-core/dist/esm/components/ToggleGroup/index.js";
export * from "@patternfly/react-core/dist/esm/components/Toolbar/index.js";
export * from "@patternfly/react-core/dist/esm/layouts/Gallery/index.js";
export * from "@patternfly/react-core/dist/esm/layouts/Stack/index.js";
export * from "@patternfly/react-core/dist/esm/layouts/Flex/index.js";
export * from "@patternfly/react-core/dist/esm/layouts/Bullseye/index.js";
export { Table, Thead, Tbody, Tr, Th, Td } from "@patternfly/react-table/dist/esm/components/Table/index.js";
