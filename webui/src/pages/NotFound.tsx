import { Link } from "react-router-dom";
import { EmptyState, EmptyStateBody, PageSection } from "../pf";

export function NotFound() {
  return (
    <PageSection>
      <EmptyState titleText="No such page" headingLevel="h1">
        <EmptyStateBody>
          Nothing is at this address. <Link to="/">Back to the dashboard</Link>
        </EmptyStateBody>
      </EmptyState>
    </PageSection>
  );
}
