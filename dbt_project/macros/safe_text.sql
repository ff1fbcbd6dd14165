{#-
    User-facing text made harmless in a spreadsheet (issue 12, item 5). A value a source lets
    anyone type (a product, a UTM tag, a campaign, stage or person's name) that starts with
    = + - @, a tab or a carriage return is a formula to Excel and LibreOffice once an analyst
    exports a mart: `=HYPERLINK(...)` would run. Such a value gets a leading apostrophe, the
    spreadsheet convention for "this is text" (OWASP, CSV injection); everything else passes
    unchanged. Applied in staging to the text columns of every source (never to phones,
    e-mails, ids or numbers); the raw tables keep the value as received. NULL stays NULL.
-#}
{% macro safe_text(text) -%}
    case
        when substr({{ text }}, 1, 1) in ('=', '+', '-', '@', chr(9), chr(13))
            then '''' || {{ text }}
        else {{ text }}
    end
{%- endmacro %}
